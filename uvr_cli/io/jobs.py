"""Turning command-line inputs into a checked list of jobs: which files, and which output paths for each."""

from __future__ import annotations

import glob
import hashlib
import os
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uvr_cli.errors import UsageError
from uvr_cli.io.decode import AUDIO_EXTENSIONS
from uvr_cli.io.formats import FORMATS

STDIN = "-"
DEFAULT_NAME = "{name}_{stem}.{ext}"  # --name's default
TEMPLATE_FIELDS = frozenset({"name", "stem", "model", "agg", "ext", "inext", "dir"})
# What --name can be changed to when two inputs would write one file, tried in turn (see `_clash_remedy`)
CLASH_REMEDIES = ("{dir}/{name}_{stem}.{ext}", "{name}_{inext}_{stem}.{ext}", "{dir}/{name}_{inext}_{stem}.{ext}")
GLOB_CHARS = set("*?[")


@dataclass
class Job:
    """One input and the file each requested stem goes to (or '-' for standard output)."""

    source: str  # a path, or '-' for standard input
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # set when the input could not even be found
    folder: str = "."  # the input's folder below the folder or pattern argument it was found by ({dir} in --name)
    done: bool = False  # its outputs exist and were made with the settings asked for: nothing to do
    redo: str | None = None  # why outputs already there are made again (they were made otherwise)

    @property
    def display(self) -> str:
        return "<stdin>" if self.source == STDIN else self.source


def _is_audio(path: Path) -> bool:
    return path.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS


def glob_base(pattern: str) -> str:
    """The fixed part of a glob pattern: its folders before the first one with a wildcard ('.' if none)."""
    fixed = []
    for part in Path(pattern).parts[:-1]:
        if GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def expand_inputs(args: list[str]) -> list[Job]:
    """Files as given, folders searched recursively for audio, glob patterns expanded by us, '-' for stdin.

    An argument that matches nothing still yields a job (with `error` set) so that it is reported as failed.
    """
    jobs: list[Job] = []
    seen: set[str] = set()

    def add(source: str, error: str | None = None, folder: str = ".") -> None:
        key = source if source == STDIN else os.path.realpath(source)
        if key not in seen:
            seen.add(key)
            jobs.append(Job(source=source, error=error, folder=folder))

    for arg in args:
        path = Path(arg)
        if arg == STDIN:
            add(STDIN)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_audio(p))
            if not found:
                add(arg, f"{arg}: folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS)[:6])}, ...)")
            for p in found:
                add(str(p), folder=str(p.parent.relative_to(path)))
        elif path.exists() or not GLOB_CHARS & set(arg):
            add(arg, None if path.exists() else f"{arg}: no such file")
        else:
            matches = sorted(m for m in glob.glob(arg, recursive=True) if Path(m).is_file())
            if not matches:
                add(arg, f"{arg}: pattern matches no file")
            base = glob_base(arg)
            for m in matches:
                add(m, folder=os.path.relpath(os.path.dirname(m) or ".", base))
    return jobs


def check_template(template: str, ext: str) -> None:
    """Refuse unknown {fields}, and a literal audio extension that is not the output format's `ext` (it would label
    the file as what it is not)."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise UsageError(f"--name {template!r}: {exc}") from None
    unknown = names - TEMPLATE_FIELDS
    if unknown:
        raise UsageError(f"--name {template!r}: unknown field {{{sorted(unknown)[0]}}}; use {sorted(TEMPLATE_FIELDS)}")
    suffix = Path(template).suffix.lstrip(".").lower()
    if suffix != ext and suffix in AUDIO_EXTENSIONS | set(FORMATS):
        remedy = f"--format {suffix}" if suffix in FORMATS else f"another --format ({', '.join(FORMATS)})"
        raise UsageError(
            f"--name {template!r} ends in .{suffix} but the output format is {ext}: end it in .{{ext}}, or use {remedy}"
        )


def model_label(models: Sequence[str | None]) -> str:
    """{model} in output names: the weight file's stem ('default' for the bundled model), 'ensemble-A+B' for several."""
    labels = ["default" if m is None else Path(m).stem for m in models]
    return labels[0] if len(labels) == 1 else "ensemble-" + "+".join(labels)


def render_name(template: str, job: Job, *, stem: str, model: str, agg: float, ext: str) -> str:
    """Fill a --name template for `job`; {dir} is '.' for inputs named directly, so '{dir}/...' stays relative, and
    {inext} is the input's extension without its dot ('' for standard input)."""
    path = Path("stdin" if job.source == STDIN else job.source)
    inext = path.suffix.lstrip(".")
    return template.format(name=path.stem, stem=stem, model=model, agg=f"{agg:g}", ext=ext, inext=inext, dir=job.folder)


def safe_output_path(out_dir: Path, relative: str) -> Path:
    """Join a rendered name onto the output folder, refusing anything that would land outside it."""
    if not relative or os.path.isabs(relative) or relative.startswith("~"):
        raise UsageError(f"output name {relative!r} must be a relative path inside the output folder")
    parts = Path(relative).parts
    if ".." in parts:
        raise UsageError(f"output name {relative!r} may not contain '..'")
    target = (out_dir / relative).resolve()
    root = out_dir.resolve()
    if target != root and root not in target.parents:
        raise UsageError(f"output name {relative!r} would be written outside {out_dir}")
    return target


def plan_outputs(
    jobs: list[Job],
    *,
    out_dir: str,
    template: str,
    stems: list[str],
    model: str,
    agg: float,
    ext: str,
    unreadable: Callable[[str], str | None] | None = None,
) -> None:
    """Fill each job's outputs; two jobs writing one path, or an output overwriting an input, is a usage error.

    Jobs that already failed (`error` set) get no outputs, so a missing input cannot cause a name collision. Where
    two inputs would write one path, `unreadable` (an input -> why it cannot be decoded, or None) is asked about
    both: one that cannot be read fails on its own instead of refusing the whole batch.
    """
    check_template(template, ext)
    if out_dir == STDIN:
        if len(stems) != 1:
            raise UsageError(f"-o - writes one stem to standard output: add --stem with one of {', '.join(stems)}")
        if len(jobs) != 1:
            raise UsageError("-o - takes exactly one input")
        jobs[0].outputs = {stems[0]: STDIN}
        return
    root = Path(out_dir)
    taken: dict[Path, Job] = {}
    inputs = {Path(j.source).resolve() for j in jobs if j.source != STDIN}
    for job in jobs:
        if job.error:
            continue
        for stem in stems:
            target = safe_output_path(root, render_name(template, job, stem=stem, model=model, agg=agg, ext=ext))
            if target in taken and taken[target] is job:
                raise UsageError(f"--name {template!r} gives both stems of {job.display} one file name; add {{stem}}")
            if target in taken and not _fail_unreadable((taken[target], job), unreadable, taken):
                raise UsageError(
                    f"{job.display} and {taken[target].display} would both write {target}; "
                    + _clash_remedy(jobs, stems=stems, model=model, agg=agg, ext=ext)
                )
            if job.error:  # this input cannot be read: it writes nothing
                break
            if target in inputs:
                raise UsageError(f"{job.display}: output {target} would overwrite an input file")
            taken[target] = job
            job.outputs[stem] = str(target)


def _fail_unreadable(
    clashing: tuple[Job, Job], unreadable: Callable[[str], str | None] | None, taken: dict[Path, Job]
) -> bool:
    """Mark each of two clashing jobs whose input cannot be read as failed, freeing its names; whether any was."""
    failed = False
    for job in clashing:
        if unreadable is None or job.source == STDIN:
            continue  # probing standard input would consume it
        reason = unreadable(job.source)
        if reason is not None:
            job.error, failed = reason, True
            for target in [Path(path) for path in job.outputs.values()]:
                del taken[target]
            job.outputs.clear()
    return failed


def _clash_remedy(jobs: list[Job], *, stems: list[str], model: str, agg: float, ext: str) -> str:
    """Advice for a name clash: the first of CLASH_REMEDIES under which every input's outputs are distinct."""
    for template in CLASH_REMEDIES:
        targets = [
            os.path.normpath(render_name(template, job, stem=stem, model=model, agg=agg, ext=ext))
            for job in jobs
            if not job.error
            for stem in stems
        ]
        if len(set(targets)) == len(targets):
            return f"use --name '{template}' to tell them apart"
    return "no --name field tells files named one by one apart by their folders: give -o per folder in separate runs"


def parse_shard(text: str, environ: Mapping[str, str]) -> tuple[int, int, str | None]:
    """--shard: 'K/N' -> (K, N, None) with 1 <= K <= N; 'auto' or 'auto/N' -> the share of the job array task that
    runs this process, from its environment, and a line saying where it was found."""
    if text == "auto" or text.startswith("auto/"):
        return _shard_from_array(text, environ)
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: use K/N, e.g. 3/8 for the third of eight shares, or auto") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text!r}: K must be between 1 and N")
    return k, n, None


def _shard_from_array(text: str, environ: Mapping[str, str]) -> tuple[int, int, str]:
    """The task's share in a Slurm job array (index and count from its variables, or from the array's spec given as
    auto/FIRST-LAST[:STEP], which still holds when one task is resubmitted alone), a Kubernetes Indexed Job or an
    AWS Batch array job (0-based index; the count given as auto/N, since neither exports it)."""
    given = text.removeprefix("auto").removeprefix("/")
    spec = _array_spec(text, given) if "-" in given else None
    try:
        count = int(given) if given and spec is None else None
    except ValueError:
        raise UsageError(f"--shard {text!r}: use auto, auto/N with the number of tasks, or auto/FIRST-LAST") from None

    def number(name: str) -> int:
        if name not in environ:
            raise UsageError(f"--shard auto: {name} is unset; use --shard K/N")
        try:
            return int(environ[name])
        except ValueError:
            raise UsageError(f"--shard auto: {name}={environ[name]!r} is not a whole number") from None

    if spec is not None:
        if "SLURM_ARRAY_TASK_ID" not in environ:
            raise UsageError(f"--shard {text}: SLURM_ARRAY_TASK_ID is unset (FIRST-LAST is a Slurm array's spec)")
        (low, high, step), task = spec, number("SLURM_ARRAY_TASK_ID")
        if task < low or task > high or (task - low) % step:
            raise UsageError(f"--shard {text}: Slurm array task {task} is not one of {given}")
        k, n, found = (task - low) // step + 1, (high - low) // step + 1, f"Slurm array task {task} of {given}"
    elif "SLURM_ARRAY_TASK_ID" in environ:
        task, low = number("SLURM_ARRAY_TASK_ID"), number("SLURM_ARRAY_TASK_MIN")
        high, tasks = number("SLURM_ARRAY_TASK_MAX"), number("SLURM_ARRAY_TASK_COUNT")
        step = (high - low) // (tasks - 1) if tasks > 1 else 1
        if step < 1 or low + step * (tasks - 1) != high or (task - low) % step:
            raise UsageError(
                f"--shard auto: Slurm array {low}-{high} of {tasks} tasks is not evenly spaced; use --shard K/N"
            )
        k, n, found = (task - low) // step + 1, tasks, f"Slurm array task {task} of {low}-{high}"
        if tasks == 1:  # an array of one, or one task of a larger array resubmitted alone: Slurm cannot tell
            found += "; one task of a larger array resubmitted alone keeps its share with --shard auto/FIRST-LAST"
    else:
        name = next((v for v in ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX") if v in environ), None)
        if name is None:
            raise UsageError(
                "--shard auto: no job array found (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or "
                "AWS_BATCH_JOB_ARRAY_INDEX is unset); use --shard K/N"
            )
        if count is None:
            raise UsageError(f"--shard auto: {name} gives this task's index but not the count; use --shard auto/N")
        k, n, found = number(name) + 1, count, f"{name}={environ[name]}"
    if count is not None and count != n:
        raise UsageError(f"--shard {text}: the job array has {n} tasks, not {count}")
    if not 1 <= k <= n:
        raise UsageError(f"--shard auto: {found} is outside {n} tasks")
    return k, n, f"shard {k}/{n} ({found})"


def _array_spec(text: str, given: str) -> tuple[int, int, int]:
    """auto/FIRST-LAST[:STEP] -> (first, last, step), as `sbatch --array` takes it."""
    bounds, _, step_text = given.partition(":")
    try:
        low, high = (int(part) for part in bounds.split("-"))
        step = int(step_text) if step_text else 1
    except ValueError:
        raise UsageError(
            f"--shard {text!r}: use auto/FIRST-LAST or auto/FIRST-LAST:STEP, as given to --array"
        ) from None
    if step < 1 or high < low or (high - low) % step:
        raise UsageError(f"--shard {text!r}: FIRST-LAST:STEP must run from FIRST to LAST in whole steps")
    return low, high, step


def select_shard(jobs: list[Job], k: int, n: int) -> list[Job]:
    """The jobs whose input path hashes to share K of N: deterministic, and independent of the inputs' order,
    so N machines given the same arguments split a corpus with no coordinator and no overlap."""

    def share(job: Job) -> int:
        return int.from_bytes(hashlib.sha1(job.source.encode("utf-8", "surrogateescape")).digest()[:8], "big") % n

    return [job for job in jobs if share(job) == k - 1]
