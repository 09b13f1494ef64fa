"""MSST-format models (engine/families/msst: BS-RoFormer, Mel-Band RoFormer, MDX23C) on the chunk path, against
reference/msst_demix.py: the authors' demix written out plainly, whole song in memory, on the same network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_uvr, tone_mix
from msst_models import BS, MDX23C, MDX23C_AUDIO, MEL, load_network, msst_config_text, msst_model
from reference import msst_demix
from uvr_cli.catalog.model_config import read_config
from uvr_cli.engine import chunks
from uvr_cli.errors import ModelError, UsageError
from uvr_cli.separator import Separator


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    error = np.sum((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(error, 1e-300)))


def reference_stems(checkpoint: Path, mix: np.ndarray, **inference) -> dict[str, np.ndarray]:
    """The authors' stems of (frames, channels) `mix`, (frames, 2) each; 'rest' is mix - target."""
    config = read_config(checkpoint.with_suffix(".yaml"))
    sections = {"audio": config.audio, "model": config.model, "training": config.training}
    sections["inference"] = {**config.inference, **inference}
    stereo = np.ascontiguousarray(np.repeat(mix, 2, axis=1) if mix.shape[1] == 1 else mix).T
    network = load_network(checkpoint)
    stems = msst_demix.separate(sections, lambda x: network(x), stereo)
    return {name: wave.T for name, wave in stems.items()}


@pytest.fixture(scope="module")
def bs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return msst_model(tmp_path_factory.mktemp("bs"), "bs_tiny", BS)


@pytest.mark.parametrize("seconds", [0.15, 1.3], ids=["shorter-than-two-borders", "reflect-padded"])
@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_bs_roformer_stems_are_the_authors(tmp_path: Path, seconds: float, batch_size: int) -> None:
    """Each batch size of the config moves the authors' fades (see chunking.py); uvr keeps them whatever it runs."""
    checkpoint = msst_model(tmp_path, "bs", BS, batch_size=batch_size)
    mix = tone_mix(seconds, 44100, seed=1)
    sep = Separator(checkpoint, device="cpu")
    assert sep.info.family == "BS-RoFormer" and sep.stems == ("vocals", "instrumental")
    stems = sep.separate(mix, 44100)
    want = reference_stems(checkpoint, mix)
    assert stems["vocals"].shape == stems["instrumental"].shape == mix.shape
    assert snr_db(want["vocals"], stems["vocals"]) > 130
    assert snr_db(want["rest"], stems["instrumental"]) > 130


def test_num_overlap_and_runtime_batches(bs: Path) -> None:
    mix = tone_mix(1.0, 44100, seed=2)
    four = Separator(bs, num_overlap=4, batch_size=3, device="cpu").separate(mix, 44100)
    want = reference_stems(bs, mix, num_overlap=4)
    assert snr_db(want["vocals"], four["vocals"]) > 130


def test_mono_and_other_rates(bs: Path) -> None:
    """A mono song is separated as its two identical channels (as MSST duplicates it) and comes back mono; a 48 kHz
    song is resampled to the model's rate and back."""
    mono = tone_mix(0.8, 44100, channels=1, seed=3)
    got = Separator(bs, device="cpu").separate(mono, 44100)
    assert got["vocals"].shape == mono.shape
    assert snr_db(reference_stems(bs, mono)["vocals"][:, :1], got["vocals"]) > 130
    assert Separator(bs, device="cpu").separate(tone_mix(0.8, 48000), 48000)["vocals"].shape == (38400, 2)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_the_result_does_not_depend_on_how_the_input_is_read(bs: Path, monkeypatch, rate: int) -> None:
    """Read 997 samples at a time instead of 65536, the stems are the same to the bit (the chunk grid depends on the
    song's length only); resampled in those pieces (48 kHz), the same but for the resampler's rounding."""
    mix = tone_mix(2.0, rate, seed=9)
    sep = Separator(bs, device="cpu")
    whole = sep.separate(mix, rate)
    monkeypatch.setattr(chunks, "READ_SAMPLES", 997)
    small_reads = sep.separate(mix, rate)
    assert set(whole) == {"vocals", "instrumental"}
    for stem in whole:
        if rate == 44100:
            np.testing.assert_array_equal(whole[stem], small_reads[stem])
        else:
            assert snr_db(whole[stem], small_reads[stem]) > 130


def test_mel_band_roformer_stems_are_the_authors(tmp_path: Path) -> None:
    checkpoint = msst_model(tmp_path, "mel", MEL)
    mix = tone_mix(1.2, 44100, seed=4)
    sep = Separator(checkpoint, device="cpu")
    assert sep.info.family == "Mel-Band RoFormer"
    stems = sep.separate(mix, 44100)
    want = reference_stems(checkpoint, mix)
    assert snr_db(want["vocals"], stems["vocals"]) > 130 and snr_db(want["rest"], stems["instrumental"]) > 130


def test_mdx23c_gives_every_instrument_of_its_config(tmp_path: Path) -> None:
    """No target: the network's outputs are the stems, named as the config names them; no mix - target."""
    checkpoint = msst_model(
        tmp_path, "mdx23c", MDX23C, audio=MDX23C_AUDIO, instruments=["Vocals", "Other"], target=None, num_overlap=4
    )
    mix = tone_mix(1.0, 44100, seed=5)
    sep = Separator(checkpoint, device="cpu")
    assert sep.info.family == "MDX23C" and sep.stems == ("vocals", "other")
    stems = sep.separate(mix, 44100)
    want = reference_stems(checkpoint, mix)
    assert snr_db(want["Vocals"], stems["vocals"]) > 130 and snr_db(want["Other"], stems["other"]) > 130


def test_a_four_stem_model_gives_four_stems(tmp_path: Path) -> None:
    four = msst_model(
        tmp_path, "four", {**BS, "num_stems": 4}, instruments=["bass", "drums", "other", "vocals"], target=None
    )
    mix = tone_mix(0.7, 44100, seed=6)
    sep = Separator(four, device="cpu")
    assert sep.stems == ("bass", "drums", "other", "vocals")
    drums = sep.separate(mix, 44100, stems=["drums"])
    assert list(drums) == ["drums"]
    assert snr_db(reference_stems(four, mix)["drums"], drums["drums"]) > 130


@pytest.mark.parametrize(
    ("instruments", "target", "stems"),
    [
        (["Vocals", "Instrumental"], "Vocals", ("vocals", "instrumental")),
        (["vocals", "other"], "vocals", ("vocals", "instrumental")),  # Kim's Mel-Band RoFormer: UVR's and MSST's names
        (["noreverb", "reverb"], "noreverb", ("noreverb", "reverb")),
        (["dry", "other"], "dry", ("dry", "other")),
        (["crowd"], "crowd", ("crowd", "no-crowd")),
        (["No Drum-Bass", "Drum-Bass", "Vocals"], "No Drum-Bass", ("no-drum-bass", "drum-bass")),
        (["kick", "snare", "toms"], None, ("kick", "snare", "toms")),
    ],
)
def test_stem_names_come_from_the_config(
    tmp_path: Path, instruments: list[str], target: str | None, stems: tuple[str, ...]
) -> None:
    """The rest of the mix is named after the config's other instrument where it lists two (else UVR's pairing)."""
    path = tmp_path / "c.yaml"
    text = msst_config_text(BS, instruments=instruments, target=target)
    path.write_text(text)
    assert read_config(path).stems == stems


def test_the_checkpoint_must_fit_its_config(tmp_path: Path, bs: Path) -> None:
    state = torch.load(bs, weights_only=True)
    for change, words in (
        (lambda s: s.pop("final_norm.gamma"), "1 missing tensor(s): final_norm.gamma"),
        (lambda s: s.update({"extra.weight": torch.zeros(2)}), "1 unexpected tensor(s): extra.weight"),
        (lambda s: s.update({"final_norm.gamma": torch.ones(17)}), "final_norm.gamma [17] (expected [16])"),
    ):
        broken = dict(state)
        change(broken)
        path = tmp_path / "broken.ckpt"
        torch.save(broken, path)
        (tmp_path / "broken.yaml").write_text(bs.with_suffix(".yaml").read_text())
        with pytest.raises(ModelError, match=r"broken\.ckpt: does not fit the BS-RoFormer") as info:
            Separator(path, device="cpu")
        assert words in str(info.value) and "\n" not in str(info.value)


def test_config_errors_are_one_line(tmp_path: Path, bs: Path) -> None:
    alone = tmp_path / "alone.ckpt"
    alone.write_bytes(bs.read_bytes())
    with pytest.raises(ModelError, match="alone.ckpt: needs its YAML config .* pass --config FILE.yaml"):
        Separator(alone, device="cpu")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ModelError, match="broken.yaml: not a readable YAML config"):
        Separator(alone, config=broken, device="cpu")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(bs.with_suffix(".yaml").read_text().replace("depth: 1", "depth: 1\n  wings: 2", 1))
    with pytest.raises(ModelError, match="unknown model setting wings"):
        Separator(alone, config=unknown, device="cpu")
    assert Separator(alone, config=bs.with_suffix(".yaml"), device="cpu").stems == ("vocals", "instrumental")
    with pytest.raises(UsageError, match="--num-overlap 0"):
        Separator(bs, num_overlap=0)


@pytest.mark.slow
def test_cli_names_and_reports_a_models_own_stems(tmp_path: Path) -> None:
    four = msst_model(
        tmp_path, "four", {**BS, "num_stems": 4}, instruments=["bass", "drums", "other", "vocals"], target=None
    )
    song = tmp_path / "song.wav"
    sf.write(song, tone_mix(0.6, 44100, seed=7), 44100)
    base = ["separate", str(song), "-m", str(four), "-o", str(tmp_path / "out"), "--device", "cpu"]
    done = run_uvr(*base, "--stem", "drums", "--stem", "bass", "--name", "{stem}/{name}.{ext}", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert sorted(record["outputs"]) == ["bass", "drums"] and record["agg_applied"] is False
    assert (tmp_path / "out" / "drums" / "song.wav").is_file()
    wrong = run_uvr(*base, "--stem", "drum")
    assert wrong.returncode == 2
    assert (
        wrong.stderr.decode().strip()
        == "uvr: --stem drum: the model gives bass, drums, other, vocals; did you mean 'drums'?"
    )
    described = json.loads(run_uvr("info", str(four), "--json").stdout)
    assert described["family"] == "BS-RoFormer" and described["stems"] == ["bass", "drums", "other", "vocals"]


def test_eval_scores_every_stem_of_a_multi_stem_set(tmp_path: Path) -> None:
    """uvr eval on a MUSDB-style folder scores each stem the model gives that the set has the truth of; the SDR
    is recomputed here from the model's own stems (MSST's sdr: total error over all samples and channels)."""
    four = msst_model(
        tmp_path, "four", {**BS, "num_stems": 4}, instruments=["bass", "drums", "other", "vocals"], target=None
    )
    truths = {}
    for i, song in enumerate(("a", "b")):
        folder = tmp_path / "set" / song
        folder.mkdir(parents=True)
        stems = {name: tone_mix(0.5 + 0.2 * i, 44100, seed=10 + 4 * i + k) for k, name in enumerate(("drums", "bass"))}
        sf.write(folder / "mixture.wav", stems["drums"] + stems["bass"], 44100, subtype="FLOAT")
        for name, wave in stems.items():
            sf.write(folder / f"{name}.wav", wave, 44100, subtype="FLOAT")
        truths[song] = stems
    done = run_uvr("eval", "-m", str(four), "--json", "--device", "cpu", str(tmp_path / "set"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["folders"][str(tmp_path / "set")]
    assert sorted(report["stems"]) == ["bass", "drums"] and report["stems"]["drums"]["clips"] == 2
    sep = Separator(four, device="cpu")
    for score in report["scores"]:
        truth = truths[score["clip"]]
        estimate = sep.separate(truth["drums"] + truth["bass"], 44100, stems=[score["stem"]])[score["stem"]]
        reference = truth[score["stem"]]
        want = 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum((reference - estimate) ** 2))
        assert score["sdr"] == pytest.approx(want, abs=1e-3)
        assert 0 < score["bleedless"] <= 100 and 0 < score["fullness"] <= 100
    table = run_uvr("eval", "--baseline", "half", str(tmp_path / "set"))
    assert table.returncode == 0, table.stderr
    assert "MEAN bass (2 clips)" in table.stdout.decode() and "MEAN drums (2 clips)" in table.stdout.decode()
