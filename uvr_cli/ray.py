"""Separation spread over a Ray cluster (the optional `ray` extra): `uvr separate --ray ADDRESS`, and for Python
users `separate(...)` and `SeparateBatch` (a callable class for `ray.data.Dataset.map_batches`).

Each worker is a Ray actor that loads the model once and separates whole files with the code a local run uses
(uvr_cli/batch.py): the same output names, settings records, skip/redo rules and atomic writes, so a cluster's
outputs are byte for byte those of one local run. Inputs and the output folder must be paths that every node
reaches (a shared filesystem), and every node's Python needs uvr installed.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from uvr_cli.batch import (
    RECORD_FIELDS,
    in_input_order,
    name_outputs,
    new_record,
    plan_work,
    separate_one,
    wanted_stems,
)
from uvr_cli.errors import UsageError, UvrError, install_command
from uvr_cli.io.jobs import DEFAULT_NAME, Job, expand_inputs
from uvr_cli.settings import SeparationSettings

JSON_FIELDS = ("outputs", "clipped_samples", "models")  # SeparateBatch's columns that hold JSON text


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(f"Ray is not installed: {install_command('ray')}") from None
    return ray


def connect(address: str | None = None) -> None:
    """Join a Ray cluster, as ray.init takes `address`: 'local' starts one on this machine, 'auto' finds a running
    one, 'ray://HOST:10001' reaches a remote one, None does what RAY_ADDRESS says (else starts a local one).
    Nothing happens where this process is already connected."""
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        # Workers' lines come back with their records (Worker.run), so Ray need not forward their output.
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UvrError(f"--ray {address}: cannot reach a Ray cluster: {cause}") from None


class Worker:
    """A Ray actor's state (and SeparateBatch's): the model loaded once, each input separated as a local run does."""

    def __init__(self, settings: SeparationSettings, threads: int | None = None) -> None:
        import torch

        from uvr_cli.separator import Separator

        if threads:
            torch.set_num_threads(threads)
        self.separator = Separator(settings=settings)
        self.output = settings.output
        self.record = settings.record(self.separator.applied)

    def run(self, job: Job, verbose: bool = False, quiet: bool = True) -> tuple[dict, list[str]]:
        """The input's record, and the lines a local run would have said about it (for the driver to print)."""
        said: list[str] = []
        record = separate_one(self.separator, job, self.output, self.record, False, verbose, quiet, said.append)
        return record, said


def map_jobs(
    settings: SeparationSettings,
    jobs: Sequence[Job],
    *,
    workers: int | None = None,
    verbose: bool = False,
    quiet: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> Iterator[dict]:
    """Each job's record, in the order of `jobs`, from actors on the connected cluster: one per GPU where it has
    GPUs (and --device allows them), else one per CPU, or `workers`; each input goes to the next free actor."""
    ray = _ray()
    count, resources = _placement(ray, settings, workers, len(jobs))
    actor_class = ray.remote(**resources)(Worker)
    threads = None if "num_gpus" in resources else resources["num_cpus"]
    actors = [actor_class.remote(settings, threads) for _ in range(count)]
    free, running, order = collections.deque(actors), {}, []
    pending = iter(jobs)

    def submit() -> None:
        while free and (job := next(pending, None)) is not None:
            actor = free.popleft()
            # a worker's working folder is not ours: it gets the input's absolute path (the record keeps ours)
            ref = actor.run.remote(dataclasses.replace(job, source=os.path.abspath(job.source)), verbose, quiet)
            running[ref] = actor
            order.append((ref, job))

    try:
        submit()
        for ref, job in _growing(order):
            while ref in running:
                finished, _ = ray.wait(list(running), num_returns=1)
                for done in finished:
                    actor = running.pop(done)
                    if _worker_alive(ray, done):
                        free.append(actor)
                submit()
            try:
                record, said = ray.get(ref)
            except ray.exceptions.RayError as exc:
                message = f"{job.display}: a Ray worker failed: {_last_line(exc)}"
                record, said = new_record(job, status="error", error=message), [message]
            for line in said:
                say(line)
            yield {**record, "input": job.display}
            if not free and not running and len(order) < len(jobs):
                raise UvrError("every Ray worker failed; the inputs left were not separated")
    finally:
        for actor in actors:
            ray.kill(actor)


def _growing(items: list) -> Iterator:
    """The items of a list that grows while it is read."""
    index = 0
    while index < len(items):
        yield items[index]
        index += 1


def _worker_alive(ray: Any, ref: Any) -> bool:
    """Whether the actor that computed `ref` can take more work (it raised no actor death)."""
    try:
        ray.get(ref)
    except ray.exceptions.RayActorError:
        return False
    except ray.exceptions.RayError:
        return True
    return True


def _last_line(exc: BaseException) -> str:
    """A Ray error's last line: the worker's own exception, below Ray's traceback."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _placement(ray: Any, settings: SeparationSettings, workers: int | None, jobs: int) -> tuple[int, dict]:
    """How many actors, and what each reserves: a GPU, or an equal share of the CPUs (threads for torch) that fits
    on one node. Never more actors than the cluster can hold at once, or than there are inputs."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    gpus = int(sum(node.get("GPU", 0) for node in nodes))
    cpus = int(sum(node.get("CPU", 0) for node in nodes))
    if gpus and settings.runtime.device in ("auto", "cuda"):
        return max(1, min(workers or gpus, gpus, jobs)), {"num_gpus": 1, "num_cpus": 1}
    count = max(1, min(workers or cpus, cpus or 1, jobs))
    widest = int(max((node.get("CPU", 1) for node in nodes), default=1))
    return count, {"num_cpus": max(1, min(cpus // count, widest))}


def _plan(
    jobs: list[Job], settings: SeparationSettings, output: str, name: str, stems: list[str], skip_existing: bool
) -> list[Job]:
    """Name every input's outputs as `uvr separate` would; the inputs that need the model."""
    name_outputs(jobs, settings, output, name, stems)
    return plan_work(jobs, settings.record(), skip_existing)


def separate(
    inputs: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    model: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    name: str = DEFAULT_NAME,
    stems: Sequence[str] | None = None,
    skip_existing: bool = True,
    address: str | None = None,
    workers: int | None = None,
    **options: Any,
) -> list[dict]:
    """Separate files, folders and glob patterns (as `uvr separate` takes them) on a Ray cluster; one record per
    input in input order, the dicts that `uvr separate --json` prints. `options` are `Separator`'s keywords and
    the output's (`fmt`, `bit_depth`, `sample_rate`, `bitrate`, `clip_mode`, `allow_truncated`); `address` as
    for `connect`. Failed inputs are error records, not exceptions."""
    settings = SeparationSettings.from_keywords(model, **options)
    jobs = expand_inputs([os.fspath(source) for source in inputs])
    work = _plan(
        jobs, settings, os.fspath(output), name, wanted_stems(settings, list(stems) if stems else None), skip_existing
    )
    results: Iterator[dict] = iter(())
    if work:
        connect(address)
        results = map_jobs(settings, work, workers=workers)
    return list(in_input_order(jobs, results, lambda line: None))


def _missing(path: str) -> str:
    where = "" if os.path.isabs(path) else f" (a relative path, read from the worker's folder {os.getcwd()})"
    return f"{path}: no such file{where}"


class SeparateBatch:
    """For `ray.data.Dataset.map_batches`: each batch's `path` column in, the records' fields out, a row per path
    (`outputs`, `clipped_samples` and `models` as JSON text). Ray makes one per actor, so the model loads once per
    worker. Paths are read on the workers: give absolute ones, and an absolute `output`.

    >>> ds = ray.data.from_items([{"path": p} for p in paths])
    >>> ds.map_batches(SeparateBatch, fn_constructor_kwargs={"model": "2_HP-UVR", "output": "/shared/stems"},
    ...                compute=ray.data.ActorPoolStrategy(size=4), batch_size=8)

    The keywords are those of `separate` (less `address` and `workers`, which are Ray's to decide here).
    """

    def __init__(
        self,
        model: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        output: str | os.PathLike = "separated",
        *,
        name: str = DEFAULT_NAME,
        stems: Sequence[str] | None = None,
        skip_existing: bool = True,
        **options: Any,
    ) -> None:
        if not os.path.isabs(output):  # it would land in the worker's working folder, which is Ray's
            raise UsageError(f"SeparateBatch(output={os.fspath(output)!r}): give an absolute path every node reaches")
        self.settings = SeparationSettings.from_keywords(model, **options)
        self.output, self.name, self.skip_existing = os.fspath(output), name, skip_existing
        self.stems = wanted_stems(self.settings, list(stems) if stems else None)
        self.worker = Worker(self.settings)

    def __call__(self, batch: Mapping[str, Any]) -> Any:
        import pyarrow

        jobs = [Job(source=str(path), error=None if os.path.isfile(path) else _missing(path)) for path in batch["path"]]
        work = _plan(jobs, self.settings, self.output, self.name, self.stems, self.skip_existing)
        results = (self.worker.run(job)[0] for job in work)
        rows = [
            {field: json.dumps(record[field]) if field in JSON_FIELDS else record[field] for field in RECORD_FIELDS}
            for record in in_input_order(jobs, results, lambda line: None)
        ]
        return pyarrow.Table.from_pylist(rows)
