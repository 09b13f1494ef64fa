"""uvr dataset synth: MIDI writing, the vocal transforms, and a one-song data set (fluidsynth, espeak-ng, pyworld)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_uvr
from uvr_cli.errors import UsageError
from uvr_cli.training import accompaniment, vocals
from uvr_cli.training import dataset as ds

TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


def test_midi_file_is_a_format0_smf() -> None:
    data = accompaniment.midi_file([(0.0, bytes([0x90, 60, 100])), (1.0, bytes([0x80, 60, 0]))], bpm=120)
    assert data[:4] == b"MThd" and data[8:10] == b"\x00\x00" and data[14:18] == b"MTrk"
    assert data.endswith(b"\x00\xff\x2f\x00")
    assert accompaniment._vlq(0x80) == b"\x81\x00" and accompaniment._vlq(480) == b"\x83\x60"


def test_melody_stays_in_range_and_key() -> None:
    rng = np.random.default_rng(0)
    song = accompaniment.random_song(rng, 10.0)
    f0 = vocals.melody_f0(song, rng, 2000, 57, 69)
    midi = 69 + 12 * np.log2(f0 / 440)
    assert midi.min() > 57 - 3 and midi.max() < 69 + 2


def test_formant_warp_moves_the_peak() -> None:
    sp = np.exp(-((np.arange(513) - 100) ** 2) / 50.0)[None, :] + 1e-6
    assert np.argmax(vocals.warp_envelope(sp, 1.2)[0]) == 120
    assert np.argmax(vocals.warp_envelope(sp, 0.8)[0]) == 80


def _need_pyworld() -> None:
    try:
        vocals.import_pyworld()
    except UsageError:
        pytest.skip("needs pyworld (pip install pyworld)")


def _fake_voices(folder: Path) -> Path:
    """1.5 s harmonic 'singing' clips under the six names the synthesiser expects; the last one at 22.05 kHz."""
    folder.mkdir()
    names = ds.TRAIN_VOICES + ds.VALIDATION_VOICES
    for i, name in enumerate(names):
        rate = 22050 if i == len(names) - 1 else 44100
        t = np.arange(int(1.5 * rate)) / rate
        phase = 2 * np.pi * np.cumsum(180 + 40 * i + 10 * np.sin(2 * np.pi * 5 * t)) / rate
        wave = sum(0.2 / k * np.sin(k * phase) for k in range(1, 8)) * np.minimum(1, 10 * t)
        sf.write(folder / f"{name}.wav", wave.astype(np.float32), rate)
    return folder


@pytest.mark.skipif(
    shutil.which("fluidsynth") is None or shutil.which("espeak-ng") is None or not TIMGM.is_file(),
    reason="needs apt packages fluidsynth, timgm6mb-soundfont and espeak-ng",
)
def test_synth_writes_matching_stems_and_credits(tmp_path: Path) -> None:
    _need_pyworld()
    out = tmp_path / "set"
    summary = ds.synthesise_dataset(
        out,
        hours=3 / 3600,
        seed=4,
        voices=_fake_voices(tmp_path / "voices"),
        soundfont=str(TIMGM),
        song_seconds=3.0,
        validation_mixes=1,
    )
    assert summary["songs"] == 1 and summary["validation_clips"] == 3
    for split, count in (("train", 1), ("validation", 3)):
        for i in range(count):
            stems = {k: sf.read(out / split / k / f"{i:04d}.flac")[0] for k in ("mixtures", "instruments", "vocals")}
            assert stems["mixtures"].shape == (int((3.0 if split == "train" else 1.5) * 44100), 2)
            np.testing.assert_allclose(stems["mixtures"], stems["instruments"] + stems["vocals"], atol=1e-4)
            assert np.abs(stems["instruments"]).max() > 0.01 and np.abs(stems["vocals"]).max() > 0.01
    assert "CC BY 4.0" in (out / "CREDITS.md").read_text()


def _fake_recordings(folder: Path, count: int = 8) -> Path:
    """`count` short stereo 'recordings' (chords of noise-shaped tones), OGG and FLAC at 48 kHz, one mono WAV."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        rate = 48000
        t = np.arange(int(2.0 * rate)) / rate
        tone = sum(np.sin(2 * np.pi * f * t) for f in (110 * (i + 1), 165 * (i + 1)))
        wave = 0.2 * np.stack([tone, np.roll(tone, 50)], axis=1) + 0.02 * rng.standard_normal((t.size, 2))
        suffix = ("ogg", "flac", "wav")[i % 3]
        sf.write(folder / f"track{i:02d}.{suffix}", (wave[:, :1] if suffix == "wav" else wave).astype(np.float32), rate)
    return folder


def test_every_fourth_recording_is_held_out_and_too_few_are_refused(tmp_path: Path) -> None:
    from uvr_cli.training.recordings import split_recordings

    train, held = split_recordings(_fake_recordings(tmp_path / "rec"))
    assert [p.name for p in held] == ["track03.ogg", "track07.flac"]
    assert len(train) == 6 and not set(train) & set(held)
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((tmp_path / "rec").iterdir())[:3]:
        shutil.copy(p, few / p.name)
    with pytest.raises(UsageError, match="3 recordings; at least 4"):
        split_recordings(few)


def test_the_real_music_check_mixes_held_out_voices_over_held_out_recordings(tmp_path: Path) -> None:
    recordings = _fake_recordings(tmp_path / "rec")
    summary = ds.real_music_check(tmp_path / "check", recordings, _fake_voices(tmp_path / "voices"), seed=1, mixes=2)
    assert summary == {"clips": 6, "recordings": ["track03.ogg", "track07.flac"]}
    for i in range(6):
        stems = {k: sf.read(tmp_path / "check" / k / f"{i:04d}.flac") for k in ("mixtures", "instruments", "vocals")}
        assert all(rate == 44100 for _, rate in stems.values())
        mix, inst, voc = (stems[k][0] for k in ("mixtures", "instruments", "vocals"))
        assert mix.shape == (int(1.5 * 44100), 2)
        np.testing.assert_allclose(mix, inst + voc, atol=1e-4)
        assert not np.allclose(inst[:, 0], inst[:, 1]), "the recordings' stereo is kept"
    credits = (tmp_path / "check" / "CREDITS.md").read_text()
    assert "track03.ogg" in credits and "track00" not in credits


@pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not TIMGM.is_file(),
    reason="needs apt packages fluidsynth and timgm6mb-soundfont",
)
def test_synth_with_recordings_never_uses_the_held_out_ones(tmp_path: Path) -> None:
    _need_pyworld()
    recordings = _fake_recordings(tmp_path / "rec")
    summary = ds.synthesise_dataset(
        tmp_path / "set",
        hours=12 / 3600,
        seed=2,
        voices=_fake_voices(tmp_path / "voices"),
        soundfont=str(TIMGM),
        song_seconds=1.5,
        validation_mixes=1,
        use_espeak=False,
        recordings=recordings,
        recording_share=1.0,
    )
    used = {Path(p).name for p in summary["recordings"]}
    assert used and not used & {"track03.ogg", "track07.flac"}
    mix, _ = sf.read(tmp_path / "set" / "train" / "mixtures" / "0000.flac")
    assert mix.shape == (int(1.5 * 44100), 2)
    assert "CC BY-SA 3.0" in (tmp_path / "set" / "CREDITS.md").read_text()


def _tone_voice() -> vocals.VoiceSource:
    """WORLD analysis of a 1.5 s harmonic tone at 220 Hz (16 kHz)."""
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    return vocals.analyse_voice("tone", sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 8)), rate)


def test_a_harmony_line_is_the_phrase_moved_by_its_interval() -> None:
    _need_pyworld()
    pw = vocals.import_pyworld()
    rng = np.random.default_rng(0)
    phrase = vocals.sung_phrase(_tone_voice(), accompaniment.random_song(rng, 5.0), rng, 1.0)

    def pitch(wave: np.ndarray) -> np.ndarray:
        x = wave.astype(np.float64)
        f0, t = pw.dio(x, 44100, frame_period=vocals.FRAME_MS)
        return pw.stonemask(x, f0, t, 44100)

    lead, fifth = pitch(vocals.render(phrase)), pitch(vocals.render(phrase, 7))
    both = (lead > 0) & (fifth > 0)
    assert both.mean() > 0.5
    assert np.median(fifth[both] / lead[both]) == pytest.approx(2 ** (7 / 12), rel=0.02)


def test_harmonies_sing_phrases_again_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    _need_pyworld()
    calls: list[float] = []
    real_render = vocals.render

    def spy(phrase: vocals.Phrase, semitones: float = 0.0) -> np.ndarray:
        calls.append(semitones)
        return real_render(phrase, semitones)

    monkeypatch.setattr(vocals, "render", spy)
    source = _tone_voice()
    for share in (0.0, 1.0):
        calls.clear()
        rng = np.random.default_rng(3)
        track = vocals.vocal_track([source], accompaniment.random_song(rng, 12.0), rng, 12.0, None, share)
        assert track.shape == (2, 12 * 44100) and np.isfinite(track).all()
        lead, backing = [c for c in calls if c == 0], [c for c in calls if c != 0]
        assert len(lead) >= 2
        if share == 0:
            assert not backing
        else:
            assert backing and set(backing) <= set(vocals.HARMONY_SEMITONES)


def test_synth_refuses_a_harmony_share_outside_0_to_1(tmp_path: Path) -> None:
    done = run_uvr("dataset", "synth", str(tmp_path / "set"), "--harmonies", "1.5")
    assert done.returncode != 0
    assert done.stderr.decode().strip().splitlines() == ["uvr: --harmonies 1.5: use a share from 0 to 1"]
    assert not (tmp_path / "set").exists()
