"""`--jobs N`: inputs spread over N worker processes, each with its own model; results come back in input order.

One process runs the network on all cores, but decoding, the band pyramid, synthesis and writing are
single-threaded numpy and leave cores idle in between; with many short files, workers that each use a share of
the cores keep them busy. Every worker separates exactly as one process would, and the outputs are identical
byte for byte: the network's results do not depend on the thread count (engine/optimize.py `conv2d`,
engine/layers.py `thread_invariant`), and float WAVs carry no time stamp (io/encode.py).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uvr_cli.settings import SeparationSettings

_worker: dict[str, Any] = {}


def _start(settings: SeparationSettings, threads: int, task: Callable[[Any, Any], dict]) -> None:
    import torch

    from uvr_cli.separator import Separator

    torch.set_num_threads(threads)
    _worker["separator"] = Separator(settings=settings)
    _worker["task"] = task


def _run(job: Any) -> dict:
    return _worker["task"](_worker["separator"], job)


def threads_per_worker(workers: int) -> int:
    """The cores this process may use, shared out evenly (at least one thread each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def map_jobs(
    settings: SeparationSettings, task: Callable[[Any, Any], dict], jobs: Sequence[Any], workers: int
) -> Iterator[dict]:
    """task(separator, job) for every job, in `workers` processes (spawned: torch's thread pools do not fork
    safely); yields the records in the order of `jobs`. `task` must be picklable (a module-level function or a
    functools.partial of one)."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start, initargs=(settings, threads_per_worker(workers), task)
    )
    try:
        yield from pool.map(_run, jobs)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
