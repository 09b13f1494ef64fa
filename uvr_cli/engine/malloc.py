"""glibc heap tuning: model loading leaves nothing behind, and the window loop reuses memory instead of faulting it in.

glibc serves a request above its mmap threshold with a fresh mapping and unmaps it on free; below it, from the
heap, whose freed chunks are reused but stay resident. Both extremes cost: loading a model with the heap leaves its
temporaries resident (a ch32 net: ~110 MB), and running the network with every activation mapped has the kernel
fault in and zero each one again (a ch32 window spent ~1.2 of ~7 CPU seconds in the kernel, the heap ~0.3).
So loading maps everything above 1 MiB, and inference takes everything below 8 MiB from the heap (the decoders'
bands among it) and maps only the large full-resolution maps, trimming the heap's top past 64 MiB free. Measured
with the CLI on a ch32 4band_v2 net, this 2-core VM: over 20 s of audio, everything mapped peaked at 859 MB with
27 s in the kernel, this at 877 MB and 11 s, a 32 MiB threshold at 996 MB and 6 s; over 60 s, this 885 MB at 1.11x
the reference's speed (benchmarks/run.py), a 32 MiB threshold 1055 MB. Not glibc: nothing to do.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Iterator

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def _glibc(name: str) -> Callable[..., object] | None:
    """glibc's function `name`, or None where the C library is another (or, on Windows, not loadable by None)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return None


def _mallopt(option: int, value: int) -> None:
    mallopt = _glibc("mallopt")
    if mallopt is not None:
        mallopt(ctypes.c_int(option), ctypes.c_int(value))


def map_large_allocations() -> None:
    """Before loading a model: its temporaries go back to the system when freed."""
    _mallopt(M_MMAP_THRESHOLD, 1 << 20)


def reuse_freed_memory() -> None:
    """After loading: the window loop's activations are reused from the heap, window after window."""
    _mallopt(M_MMAP_THRESHOLD, 8 << 20)
    _mallopt(M_TRIM_THRESHOLD, 64 << 20)


@contextlib.contextmanager
def heap_for_one_off_work() -> Iterator[None]:
    """Inside model loading, for a one-off job with many large temporaries (the int8 preparation for --fast): they
    come from the heap, which is faster than mapping and faulting in each one, and the heap is trimmed afterwards,
    so none of it stays resident for the separation (benchmarks/RESULTS.md)."""
    reuse_freed_memory()
    try:
        yield
    finally:
        _malloc_trim()
        map_large_allocations()  # back to loading's setting


def _malloc_trim() -> None:
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(ctypes.c_size_t(0))
