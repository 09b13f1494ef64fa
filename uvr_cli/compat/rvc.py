"""RVC's `AudioPre` / `AudioPreDeEcho` (infer/modules/uvr5/vr.py) on uvr's engine: change one import line.

Scripts written against RVC (RVC's web UI, GPT-SoVITS, Chat-Haruhi's yuki_builder) keep their calls, their file
names and their folders; what changes is underneath: the separation is exact (no int16 wrap-around, no silent
tail), memory stays bounded however long the song, and every format is written directly (no ffmpeg temp files).

What is kept from RVC, on purpose:
- the constructors `(agg, model_path, device, is_half, tta=False)`; `AudioPre` takes CascadedASPPNet files (RVC's
  HP2/HP3/HP5, UVR's numbered models), `AudioPreDeEcho` CascadedNet files (VR-DeEcho*, VR-DeEchoDeReverb);
- `_path_audio_`'s parameter order, which differs between the two classes (`ins_root, vocal_root` for AudioPre,
  `vocal_root, ins_root` for AudioPreDeEcho), so positional calls land where they did;
- the file names `{head}{basename of the input}_{agg}.{format}` and the folders: the stem the network's mask keeps
  goes to `ins_root`, the rest (mix - mask) to `vocal_root`. AudioPre names the mask's stem `instrument_`, or
  `vocal_` when `is_hp3=True` (the rest is then `instrument_`); AudioPreDeEcho always names the mask's stem (the
  dry voice) `vocal_` and the rest (the echo) `instrument_`, and ignores `is_hp3`;
- aggressiveness: `agg` (0-100) raises a CascadedASPPNet's mask to the power 1 + agg/100; CascadedNet models
  ignore it, as in RVC, though it still appears in the file names;
- output at the model's rate (44.1 kHz for RVC's models), whatever the input's rate.

What differs: errors are one-line `UvrError`s naming the file; a mono input gives mono stems (RVC duplicates it to
stereo); WAV/FLAC keep the input's bit depth where they can (16-bit for 16-bit or lossy inputs, as RVC writes;
32-bit float WAV for float inputs); formats are wav, flac, mp3 and ogg (RVC's m4a needed ffmpeg).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from uvr_cli.catalog.registry import identify
from uvr_cli.errors import AudioError, ModelError, UsageError
from uvr_cli.separator import Separator

logger = logging.getLogger(__name__)

FORMATS = ("wav", "flac", "mp3", "ogg")
_STEMS = ("vocals", "instrumental")
NO_SAVE_ROOT = "No save root."
"""What RVC's `_path_audio_` returns when neither folder is given (it writes nothing then)."""


class _RvcSeparator:
    """What both RVC classes share: loading the model RVC's way, and writing the stems under RVC's names."""

    cascaded_net = False  # which network family the class takes
    rvc_preset = "4band_v2"  # the band preset RVC hard-codes for this class (used for unrecognised files)

    def __init__(
        self, agg: float, model_path: str | os.PathLike, device: object, is_half: bool, tta: bool = False
    ) -> None:
        if isinstance(agg, bool) or not isinstance(agg, (int, float)) or not 0 <= agg <= 100:
            raise UsageError(f"{type(self).__name__}: agg {agg!r}: use a number from 0 to 100 (RVC's default is 10)")
        self.model_path = model_path
        self.device = device
        self.data = {"postprocess": False, "tta": tta, "window_size": 512, "agg": agg, "high_end_process": "mirroring"}
        device_name = "auto" if device is None else str(device)
        on_cpu = device_name.split(":")[0] == "cpu"
        options = {"tta": tta, "device": device_name, "precision": "fp16" if is_half and not on_cpu else "fp32"}
        if not self.cascaded_net:  # CascadedNet models ignore it; RVC passes it all the same
            options["agg"] = agg
        self.separator = self._load(model_path, options)
        self.model = self.separator  # RVC scripts `del pre_fun.model` to free GPU memory: that works here too

    def _load(self, model_path: str | os.PathLike, options: dict) -> Separator:
        """The model with its recognised preset, else RVC's fixed preset; refused when it is the other family."""
        try:
            separator = Separator(model_path, **options)
        except ModelError:
            path = Path(model_path)
            if not path.is_file() or identify(path, self.cascaded_net, None).params is not None:
                raise
            separator = Separator(model_path, params=self.rvc_preset, **options)
        if separator.info.family != "VR":
            raise ModelError(f"{model_path}: an {separator.info.family} model; RVC's classes run VR models only")
        if ("agg" in separator.info.applies) == self.cascaded_net:  # only CascadedNet models ignore agg
            family = "CascadedNet (De-Echo/De-Reverb)" if not self.cascaded_net else "CascadedASPPNet (HP2/HP3/HP5)"
            other = "AudioPre" if self.cascaded_net else "AudioPreDeEcho"
            raise ModelError(
                f"{model_path}: a {family} model; load it with {other}, as RVC does "
                "(AudioPreDeEcho for names containing 'DeEcho')"
            )
        return separator

    def _separate(
        self,
        music_file: str | os.PathLike,
        mask_root: str | os.PathLike | None,
        rest_root: str | os.PathLike | None,
        fmt: str,
        mask_head: str,
    ) -> str | None:
        """Write the mask's stem to `mask_root` and the rest to `rest_root` under RVC's names (None: skip)."""
        if mask_root is None and rest_root is None:
            return NO_SAVE_ROOT
        if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
            raise UsageError(
                f"format {fmt!r}: uvr writes {', '.join(FORMATS)} (RVC converted other formats with "
                "ffmpeg; convert a wav output instead)"
            )
        source = os.fspath(music_file)
        name = os.path.basename(source)
        mask_stem = self.separator.info.primary
        rest_stem = next(stem for stem in _STEMS if stem != mask_stem)
        rest_head = "instrument_" if mask_head == "vocal_" else "vocal_"
        outputs = {}
        for root, head, stem in ((mask_root, mask_head, mask_stem), (rest_root, rest_head, rest_stem)):
            if root is None:
                continue
            folder = os.fspath(root)
            _make_folder(folder)
            outputs[stem] = os.path.join(folder, f"{head}{name}_{self.data['agg']}.{fmt}")
        result = self.separator.separate_file(source, outputs, fmt=fmt.lower(), sample_rate="model")
        for warning in result.warnings:
            logger.warning("%s: %s", name, warning)
        logger.info("%s done", name)
        return None


def _make_folder(folder: str) -> None:
    """Create an output folder as RVC does (os.makedirs), with a one-line error; '' is the current folder."""
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise AudioError(f"{folder}: cannot create the output folder: {exc.strerror or exc}") from None


class AudioPre(_RvcSeparator):
    """RVC's AudioPre: a CascadedASPPNet model (HP2_all_vocals, HP3_all_vocals, HP5_only_main_vocal, 1_HP-UVR...)."""

    def _path_audio_(
        self,
        music_file: str | os.PathLike,
        ins_root: str | os.PathLike | None = None,
        vocal_root: str | os.PathLike | None = None,
        format: str = "flac",  # noqa: A002 (RVC's name)
        is_hp3: bool = False,
    ) -> str | None:
        """Separate `music_file`: the mask's stem into `ins_root` as `instrument_{name}_{agg}.{format}` (named
        `vocal_...` when is_hp3), the rest into `vocal_root` as `vocal_...` (`instrument_...` when is_hp3)."""
        return self._separate(music_file, ins_root, vocal_root, format, "vocal_" if is_hp3 else "instrument_")


class AudioPreDeEcho(_RvcSeparator):
    """RVC's AudioPreDeEcho: a CascadedNet model (VR-DeEchoNormal, VR-DeEchoAggressive, VR-DeEchoDeReverb)."""

    cascaded_net = True
    rvc_preset = "4band_v3"

    def _path_audio_(
        self,
        music_file: str | os.PathLike,
        vocal_root: str | os.PathLike | None = None,
        ins_root: str | os.PathLike | None = None,
        format: str = "flac",  # noqa: A002 (RVC's name)
        is_hp3: bool = False,
    ) -> str | None:
        """Separate `music_file`: the dry voice (the mask's stem) into `ins_root` as `vocal_{name}_{agg}.{format}`,
        the echo into `vocal_root` as `instrument_...` (RVC's order and names; is_hp3 is ignored, as in RVC)."""
        return self._separate(music_file, ins_root, vocal_root, format, "vocal_")
