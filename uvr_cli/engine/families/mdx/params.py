"""An MDX-Net model's parameters: from UVR's table by the file's hash (models/mdx_models.json), or from a JSON file
with UVR's field names for a file the table does not know (--params)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from uvr_cli.errors import ModelError

TABLE_FILE = "mdx_models.json"
FIELDS = ("compensate", "mdx_dim_f_set", "mdx_dim_t_set", "mdx_n_fft_scale_set", "primary_stem")


@dataclass(frozen=True)
class MdxParams:
    """What UVR knows of an MDX-Net model beyond its network."""

    n_fft: int  # the STFT size (hop 1024)
    dim_f: int  # frequency bins the network sees, from the lowest
    dim_t: int  # STFT frames per chunk the network was exported with (2**mdx_dim_t_set)
    compensate: float  # the network's output is multiplied by it (UVR's "volume compensation")
    primary_stem: str  # UVR's label of what the network estimates: "Vocals", "Instrumental", "Reverb", ...
    how: str  # where these came from, for reports

    @property
    def from_params(self) -> bool:
        return self.how.startswith("--params")

    def describe(self) -> str:
        return f"n_fft {self.n_fft}, dim_f {self.dim_f}, dim_t {self.dim_t}, compensate {self.compensate:g}"


@lru_cache(maxsize=1)
def table() -> dict[str, dict]:
    """UVR's MDX-Net model data, by UVR hash (shipped in models/)."""
    return json.loads((resources.files("uvr_models") / TABLE_FILE).read_text(encoding="utf-8"))["hashes"]


def from_record(record: object, how: str, where: str) -> MdxParams:
    """Check one record of UVR's fields; a bad one is a one-line ModelError naming `where` and the field."""
    if not isinstance(record, dict):
        raise ModelError(f"{where}: MDX-Net parameters must be a JSON object with {', '.join(FIELDS)}")
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise ModelError(f"{where}: MDX-Net parameters lack {', '.join(missing)} (UVR's field names)")
    ints = {name: record[name] for name in ("mdx_dim_f_set", "mdx_dim_t_set", "mdx_n_fft_scale_set")}
    for name, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ModelError(f"{where}: {name} must be a positive whole number, not {value!r}")
    compensate = record["compensate"]
    if not isinstance(compensate, (int, float)) or isinstance(compensate, bool) or not 0 < compensate < 100:
        raise ModelError(f"{where}: compensate must be a positive number (e.g. 1.035), not {compensate!r}")
    if not isinstance(record["primary_stem"], str) or not record["primary_stem"]:
        raise ModelError(f'{where}: primary_stem must name a stem, e.g. "Vocals" or "Instrumental"')
    n_fft, dim_f, dim_t_set = ints["mdx_n_fft_scale_set"], ints["mdx_dim_f_set"], ints["mdx_dim_t_set"]
    if n_fft % 2 or dim_f > n_fft // 2 + 1:
        raise ModelError(f"{where}: mdx_dim_f_set {dim_f} is more than the {n_fft // 2 + 1} bins of n_fft {n_fft}")
    if dim_t_set > 14:
        raise ModelError(f"{where}: mdx_dim_t_set is the log2 of the frames (8 for 256), not {dim_t_set}")
    return MdxParams(n_fft, dim_f, 2**dim_t_set, float(compensate), record["primary_stem"], how)


def find_params(path: Path, uvr_hash: str, params: str | None, force: bool = False) -> MdxParams:
    """The parameters of the model at `path`: UVR's table's, else --params (a JSON file of UVR's fields); --params
    replaces the table's only when `force`d."""
    record = table().get(uvr_hash)
    if params is not None and (force or record is None):
        source = Path(params)
        try:
            record = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
            raise ModelError(f"{params}: cannot read MDX-Net parameters from it: {reason}") from None
        return from_record(record, f"--params {source.name}", str(params))
    if record is None:
        raise ModelError(
            f"{path.name}: an MDX-Net model whose UVR hash {uvr_hash} is not in UVR's table; pass --params FILE.json "
            f"with UVR's fields ({', '.join(FIELDS)})"
        )
    return from_record(record, f"UVR hash {uvr_hash}", TABLE_FILE)
