"""Chains: a further model run on one stem of the step before it (`uvr separate -m A --then B:vocals`).

Each step separates the previous step's stem as written to a 32-bit float file at its model's rate (so a chain gives
what running the next model on that file gives), in a private temporary folder; the stems nobody splits further
are then written in the asked format and rate, through the same file handling as a single run (separator.py
`write_stems`: format checks before the first step, atomic writes, the same warnings). A step's stems are named
after the stem it split and what its model estimates, e.g. `vocals-no-echo` and `vocals-echo` for a De-Echo model
on `vocals`. Steps may be of any family.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uvr_cli.catalog.model_config import PAIR
from uvr_cli.engine.blocks import InputStream, Opener, Sink
from uvr_cli.engine.device import Runtime
from uvr_cli.engine.family import ModelInfo
from uvr_cli.engine.ranges import resample_range, source_range
from uvr_cli.engine.resample import resampled_length
from uvr_cli.engine.synthesis import OUTPUT_RESAMPLER
from uvr_cli.errors import UsageError
from uvr_cli.io.decode import open_source
from uvr_cli.io.encode import open_stem_writers
from uvr_cli.separator import FileResult, Separator, check_stems, write_stems
from uvr_cli.settings import OutputOptions

# UVR's names for the two sides of a model's estimate; unknown ones fall back to "rest".
COMPLEMENT = {
    "vocals": "instrumental",
    "instrumental": "vocals",
    "echo": "no-echo",
    "no-echo": "echo",
    "reverb": "no-reverb",
    "no-reverb": "reverb",
    "noise": "no-noise",
    "no-noise": "noise",
    "dry": "wet",
}
BLOCK = 1 << 18  # output samples written per block when a stem is converted
STEP_FILES = OutputOptions("wav", "32f", "model")  # what each step hands the next


@dataclass(frozen=True)
class Step:
    """A further model, and the name of the previous step's stem it separates."""

    separator: Separator
    split: str


def step_names(separator: Separator, split: str) -> dict[str, str]:
    """Our stem keys of a further step -> its output names: `split` joined with what each stem holds (for a
    vocal/instrumental pair, what UVR calls each side of the model's estimate)."""
    info = separator.info
    if set(separator.stems) != set(PAIR):  # a model whose config names its stems
        return {stem: f"{split}-{stem}" for stem in separator.stems}
    estimated = info.identity.primary_stem.lower().replace(" ", "-") if info.identity.params else info.primary
    other = next(s for s in separator.stems if s != info.primary)
    return {info.primary: f"{split}-{estimated}", other: f"{split}-{COMPLEMENT.get(estimated, 'rest')}"}


class Chain:
    """A first separator and further steps; `stems` are the names of the outputs a run gives."""

    def __init__(self, first: Separator, steps: list[Step]) -> None:
        self.first, self.steps = first, steps
        names = list(first.stems)
        for step in steps:
            if step.split not in names:
                raise UsageError(
                    f"--then {step.separator.info.path.name}:{step.split}: no stem of that name; "
                    f"the stems before it are {', '.join(names)}"
                )
            produced = step_names(step.separator, step.split)
            at = names.index(step.split)
            names[at : at + 1] = [produced[s] for s in step.separator.stems]
        self.stems = tuple(names)

    @property
    def members_info(self) -> list[ModelInfo]:
        return self.first.members_info + [step.separator.info for step in self.steps]

    @property
    def model_sample_rate(self) -> int:
        return self.first.model_sample_rate

    @property
    def runtime(self) -> Runtime:
        return self.first.runtime

    @property
    def applied(self) -> set[str]:
        return self.first.applied.union(*(step.separator.applied for step in self.steps))

    def separate_file(
        self,
        source: str,
        outputs: dict[str, str],
        *,
        output: OutputOptions | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> FileResult:
        """Run every step on `source`; write the stems named in `outputs` (the names in `stems`) as `output` says."""
        check_stems(list(outputs), self.stems)
        return write_stems(
            source,
            outputs,
            output or OutputOptions(),
            self.model_sample_rate,
            self.first.settings.runtime.overlap_io,
            self._produce,
            on_progress,
        )

    def _produce(
        self, open_reader: Opener, sinks: dict[str, Sink], rate: int, on_progress: Callable[[int, int], None] | None
    ) -> None:
        with open_reader() as reader:
            frames, input_rate, channels = reader.frames, reader.sample_rate, min(reader.channels, 2)
        with tempfile.TemporaryDirectory(prefix="uvr-chain-") as folder:
            model_rate = self.first.model_sample_rate
            files = {stem: str(Path(folder) / f"{stem}.wav") for stem in self.first.stems}
            length = resampled_length(frames, input_rate, model_rate)
            with open_stem_writers(files, model_rate, channels, "wav", "32f", length) as writers:
                self.first.produce(open_reader, {stem: w.write for stem, w in writers.items()}, model_rate, on_progress)
            self._run_steps(files, Path(folder), on_progress)
            _convert({stem: files[stem] for stem in sinks}, sinks, rate, resampled_length(frames, input_rate, rate))

    def _run_steps(self, files: dict[str, str], folder: Path, on_progress: Callable[[int, int], None] | None) -> None:
        """Run each further step on its stem's file; `files` (name -> 32-bit float file at its model's rate) gains
        the steps' stems in place of the ones they split."""
        for step in self.steps:
            produced = step_names(step.separator, step.split)
            targets = {stem: str(folder / f"{name}.wav") for stem, name in produced.items()}
            step.separator.separate_file(files.pop(step.split), targets, output=STEP_FILES, on_progress=on_progress)
            files.update({produced[stem]: path for stem, path in targets.items()})


def _convert(files: dict[str, str], sinks: dict[str, Sink], rate: int, length: int) -> None:
    """Hand each stem file to its sink at `rate` (resampled as uvr's outputs are), `length` samples, in blocks."""
    with contextlib.ExitStack() as stack:
        sources = {stem: stack.enter_context(open_source(path)) for stem, path in files.items()}
        for stem, decoded in sources.items():
            with decoded.open() as reader:
                stream = InputStream(reader)
                n_out = resampled_length(decoded.frames, decoded.sample_rate, rate)
                for q0 in range(0, length, BLOCK):
                    q1 = min(q0 + BLOCK, length)
                    s, e = source_range(q0, q1, decoded.sample_rate, rate, OUTPUT_RESAMPLER, decoded.frames)
                    block = resample_range(stream.get(s, e), q0, q1, decoded.sample_rate, rate, OUTPUT_RESAMPLER, n_out)
                    sinks[stem](np.ascontiguousarray(block[: decoded.channels].T, dtype=np.float32))
