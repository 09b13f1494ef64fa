"""The one table of output formats: the option choices, bit depths, subtypes and size estimates all come from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputFormat:
    """What one output format can hold."""

    name: str  # as --format takes it
    depths: tuple[str, ...]  # the bit depths it can store (--bit-depth); empty for lossy formats
    lossy_subtype: str | None = None  # libsndfile's subtype for a lossy format
    max_kbps: int | None = None  # the highest bitrate we write (lossy), for size estimates

    @property
    def lossy(self) -> bool:
        return self.lossy_subtype is not None


FORMATS = {
    f.name: f
    for f in (
        OutputFormat("wav", ("16", "24", "32f")),
        OutputFormat("flac", ("16", "24")),
        OutputFormat("mp3", (), lossy_subtype="MPEG_LAYER_III", max_kbps=320),
        OutputFormat("ogg", (), lossy_subtype="VORBIS", max_kbps=500),
    )
}
BIT_DEPTHS = ("16", "24", "32f")
PCM_SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}
SAMPLE_BYTES = {"16": 2, "24": 3, "32f": 4}
# An input's libsndfile subtype -> the bit depth that keeps it (anything else is kept as 16-bit)
_INPUT_DEPTHS = {"PCM_24": "24", "PCM_32": "32f", "FLOAT": "32f", "DOUBLE": "32f"}
_INPUT_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3}


def default_bit_depth(fmt: str, input_subtype: str | None) -> str | None:
    """The input's bit depth where the output format can hold it, else the nearest the format allows (None for
    lossy formats)."""
    allowed = FORMATS[fmt].depths
    if not allowed:
        return None
    wanted = _INPUT_DEPTHS.get(input_subtype or "", "16")
    if wanted in allowed:
        return wanted
    return "24" if wanted == "32f" else "16"


def bytes_per_second(fmt: str, bit_depth: str | None, input_subtype: str | None, rate: int, channels: int) -> float:
    """About how many bytes a second of output takes: PCM uncompressed (FLAC counted as WAV), lossy formats at their
    top bitrate, so that an estimate is never too small. Without --bit-depth the input's own width counts."""
    spec = FORMATS[fmt]
    if spec.lossy:
        assert spec.max_kbps is not None
        return spec.max_kbps * 1000 / 8
    width = SAMPLE_BYTES.get(bit_depth or "") or _INPUT_SAMPLE_BYTES.get(input_subtype or "", 4)
    return rate * channels * width
