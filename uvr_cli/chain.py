"""Chains: a further model run on one stem of the step before it (`uvr separate -m A --then B:vocals`).

Each step separates the previous step's stem as written to a 32-bit float file at the model's rate (so a chain
gives what running the next model on that file gives), in a private temporary folder; the stems nobody splits
further are then written in the asked format and rate. A step's stems are named after the stem it split and
what its model's mask estimates, e.g. `vocals-no-echo` and `vocals-echo` for a De-Echo model on `vocals`.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uvr_cli.engine.analysis import InputStream
from uvr_cli.engine.pipeline import STEMS
from uvr_cli.engine.ranges import resample_range, source_range
from uvr_cli.engine.resample import resampled_length
from uvr_cli.engine.synthesis import OUTPUT_RESAMPLER
from uvr_cli.errors import UsageError
from uvr_cli.io.decode import open_source
from uvr_cli.io.encode import BlockWriter, open_stem_writers
from uvr_cli.separator import FileResult, ModelInfo, Separator, default_bit_depth

# UVR's names for the two sides of a model's mask; unknown ones fall back to "rest".
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


@dataclass(frozen=True)
class Step:
    """A further model, and the name of the previous step's stem it separates."""

    separator: Separator
    split: str


def step_names(separator: Separator, split: str) -> dict[str, str]:
    """Our stem keys of a further step -> its output names: `split` joined with what each side of the mask holds."""
    info = separator.info
    estimated = info.identity.primary_stem.lower().replace(" ", "-") if info.identity.params else info.primary
    other = next(s for s in STEMS if s != info.primary)
    return {info.primary: f"{split}-{estimated}", other: f"{split}-{COMPLEMENT.get(estimated, 'rest')}"}


class Chain:
    """A first separator and further steps; `stems` are the names of the outputs a run gives."""

    def __init__(self, first: Separator, steps: list[Step]) -> None:
        self.first, self.steps = first, steps
        names = list(STEMS)
        for step in steps:
            if step.split not in names:
                raise UsageError(
                    f"--then {step.separator.info.path.name}:{step.split}: no stem of that name; "
                    f"the stems before it are {', '.join(names)}"
                )
            produced = step_names(step.separator, step.split)
            at = names.index(step.split)
            names[at : at + 1] = [produced[s] for s in STEMS]
        self.stems = names

    @property
    def members_info(self) -> list[ModelInfo]:
        return self.first.members_info + [step.separator.info for step in self.steps]

    @property
    def model_sample_rate(self) -> int:
        return self.first.model_sample_rate

    def separate_file(
        self,
        source: str,
        outputs: dict[str, str],
        *,
        fmt: str = "wav",
        bit_depth: str | None = None,
        sample_rate: str | int = "input",
        bitrate: str | None = None,
        clip_mode: str = "clip",
        on_progress: Callable[[int, int], None] | None = None,
    ) -> FileResult:
        """Run every step on `source`; write the stems named in `outputs` (the names in `stems`)."""
        unknown = set(outputs) - set(self.stems)
        if unknown:
            raise UsageError(f"stems must be among {', '.join(self.stems)}, got {', '.join(sorted(unknown))}")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="uvr-chain-") as folder:
            if source == "-":  # read once, used twice: by the first step and for the input's rate and length
                source = str(Path(folder) / "input")
                with open(source, "wb") as spool:
                    shutil.copyfileobj(sys.stdin.buffer, spool)
            with open_source(source) as decoded:
                frames, input_rate, channels_in = decoded.frames, decoded.sample_rate, decoded.channels
                depth = bit_depth if bit_depth is not None else default_bit_depth(fmt, decoded.subtype)
            files = self._run_steps(source, Path(folder), on_progress)
            named: dict[str | int, str | int] = {"input": input_rate, "model": self.first.preset.sr}
            rate = named.get(sample_rate, sample_rate)
            if not isinstance(rate, int) or rate <= 0:
                raise UsageError(f"--sample-rate {sample_rate!r}: use input, model or a rate in Hz")
            length = resampled_length(frames, input_rate, rate)
            writers = _convert({s: files[s] for s in outputs}, outputs, rate, fmt, depth, bitrate, clip_mode, length)
        result = FileResult(input=source, status="ok", duration_s=frames / input_rate, outputs=dict(outputs))
        if channels_in > 2:
            result.warnings.append(f"{channels_in} channels were downmixed to stereo")
        result.note_writers(writers)
        result.wall_s = time.perf_counter() - start
        return result

    def _run_steps(self, source: str, folder: Path, on_progress: Callable[[int, int], None] | None) -> dict[str, str]:
        """Every stem of every step as a 32-bit float file at the model's rate; returns name -> file."""
        files = {stem: str(folder / f"{stem}.wav") for stem in STEMS}
        self.first.separate_file(
            source, files, fmt="wav", bit_depth="32f", sample_rate="model", on_progress=on_progress
        )
        for step in self.steps:
            produced = step_names(step.separator, step.split)
            targets = {stem: str(folder / f"{name}.wav") for stem, name in produced.items()}
            step.separator.separate_file(
                files.pop(step.split), targets, fmt="wav", bit_depth="32f", sample_rate="model", on_progress=on_progress
            )
            files.update({produced[stem]: path for stem, path in targets.items()})
        return files


def _convert(
    files: dict[str, str],
    outputs: dict[str, str],
    rate: int,
    fmt: str,
    depth: str | None,
    bitrate: str | None,
    clip_mode: str,
    length: int,
) -> dict[str, BlockWriter]:
    """Write each stem file to its output at `rate` (resampled as uvr's outputs are), all together, in blocks."""
    with contextlib.ExitStack() as stack:
        sources = {stem: stack.enter_context(open_source(path)) for stem, path in files.items()}
        channels = next(iter(sources.values())).channels
        with open_stem_writers(
            outputs, rate, channels, fmt, depth, length, bitrate=bitrate, clip_mode=clip_mode
        ) as writers:
            for stem, decoded in sources.items():
                with decoded.open() as reader:
                    stream = InputStream(reader)
                    n_out = resampled_length(decoded.frames, decoded.sample_rate, rate)
                    for q0 in range(0, length, BLOCK):
                        q1 = min(q0 + BLOCK, length)
                        s, e = source_range(q0, q1, decoded.sample_rate, rate, OUTPUT_RESAMPLER, decoded.frames)
                        block = resample_range(
                            stream.get(s, e), q0, q1, decoded.sample_rate, rate, OUTPUT_RESAMPLER, n_out
                        )
                        writers[stem].write(np.ascontiguousarray(block[:channels].T, dtype=np.float32))
        return writers
