"""Vocals for `uvr dataset synth`: WORLD (pyworld) re-synthesis of real or espeak-ng voices, made to sing.

A source recording is analysed once (F0, spectral envelope, aperiodicity); each phrase then re-times it and gives it
a new melody (vibrato, drift, scoops, portamento), a warped envelope (formant shift) and changed aperiodicity
(breathy to pressed). Sources are real CC BY singing clips, or espeak-ng speech of random syllables in many
languages and voice variants. A vocal track strings phrases with rests, then adds EQ, reverb, level automation,
sometimes a double and, when asked for, backing harmonies.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from uvr_cli.engine.resample import resample
from uvr_cli.errors import UsageError
from uvr_cli.training.accompaniment import RATE, Song

FRAME_MS = 5.0
ESPEAK_LANGUAGES = ("en", "es", "it", "de", "fr", "pt", "pl", "fi", "sw", "id", "nl", "ro", "hu", "cs", "tr")
SYLLABLE_ONSETS = ("", "l", "m", "n", "d", "t", "s", "r", "b", "k", "v", "h", "sh", "w", "y", "p", "g", "f")
SYLLABLE_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ee", "oo", "ah")
HARMONY_SEMITONES = (3, 4, 7, 12, -5, -8, -9)  # thirds, fifth, octave above; fourth, sixths below


def import_pyworld() -> types.ModuleType:
    """Import pyworld, whose __init__ still needs the pkg_resources that setuptools >= 81 no longer ships."""
    try:
        import pyworld
    except ModuleNotFoundError as exc:
        if exc.name != "pkg_resources":
            raise UsageError("pyworld is not installed: pip install pyworld") from None
        shim = types.ModuleType("pkg_resources")
        shim.__dict__["get_distribution"] = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = shim
        try:
            import pyworld
        finally:
            del sys.modules["pkg_resources"]
    return pyworld


@dataclass
class VoiceSource:
    """WORLD parameters of one source recording (frames of FRAME_MS)."""

    name: str
    rate: int
    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray

    @property
    def voiced(self) -> np.ndarray:
        return self.f0 > 0


def analyse_voice(name: str, wave: np.ndarray, rate: int) -> VoiceSource:
    """WORLD analysis (DIO + StoneMask, CheapTrick, D4C)."""
    pw = import_pyworld()
    x = np.ascontiguousarray(wave, dtype=np.float64)
    f0, t = pw.dio(x, rate, frame_period=FRAME_MS, f0_floor=60.0, f0_ceil=1100.0)
    f0 = pw.stonemask(x, f0, t, rate)
    return VoiceSource(name, rate, f0, pw.cheaptrick(x, f0, t, rate), pw.d4c(x, f0, t, rate))


def load_real_voices(folder: Path, names: tuple[str, ...], cache: Path | None) -> list[VoiceSource]:
    """Analyse the named clips of `folder` (cached as .npz in `cache`)."""
    sources = []
    for name in names:
        path = folder / f"{name}.wav"
        if not path.is_file():
            raise UsageError(f"{path}: missing (the real CC BY voices, see --voices)")
        cached = cache / f"{name}.world.npz" if cache else None
        if cached and cached.is_file():
            data = np.load(cached)
            sources.append(VoiceSource(name, int(data["rate"]), data["f0"], data["sp"], data["ap"]))
            continue
        wave, rate = sf.read(path, dtype="float64", always_2d=True)
        source = analyse_voice(name, wave.mean(axis=1), rate)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cached, rate=source.rate, f0=source.f0, sp=source.sp, ap=source.ap)
        sources.append(source)
    return sources


def espeak_voice(rng: np.random.Generator, words: int = 8) -> VoiceSource:
    """A random espeak-ng voice (language, variant, speed) saying random syllables, analysed with WORLD."""
    variants = _espeak_variants()
    voice = f"{rng.choice(ESPEAK_LANGUAGES)}+{rng.choice(variants)}" if variants else str(rng.choice(ESPEAK_LANGUAGES))
    text = " ".join(
        "".join(str(rng.choice(SYLLABLE_ONSETS)) + str(rng.choice(SYLLABLE_VOWELS)) for _ in range(rng.integers(1, 4)))
        for _ in range(words)
    )
    with tempfile.TemporaryDirectory(prefix="uvr-espeak-") as tmp:
        wav = Path(tmp) / "say.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(rng.integers(80, 150))), "-g", "2", "-w", str(wav), text]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or not wav.is_file():
            raise UsageError(f"espeak-ng failed: {done.stderr.strip()[:200]}")
        wave, rate = sf.read(wav, dtype="float64")
    return analyse_voice(f"espeak:{voice}", wave, rate)


_VARIANTS: list[str] | None = None


def _espeak_variants() -> list[str]:
    global _VARIANTS
    if _VARIANTS is None:
        out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True).stdout.splitlines()[1:]
        _VARIANTS = [line.split()[-1].split("/")[-1] for line in out if line.strip()]
        _VARIANTS = [v for v in _VARIANTS if v.lower() not in ("whisper", "klatt4")]
    return _VARIANTS


def melody_f0(song: Song, rng: np.random.Generator, n_frames: int, low: int, high: int) -> np.ndarray:
    """A sung F0 contour in Hz over `n_frames`: scale notes with portamento, scoops, vibrato and drift."""
    frame_s = FRAME_MS / 1000
    beat_s = 60 / song.bpm
    notes = song.scale_notes(low, high)
    pitch = np.empty(n_frames)
    i, current = 0, float(rng.choice(notes))
    while i < n_frames:
        length = max(1, int(float(rng.choice([0.5, 0.5, 1, 1, 1.5, 2, 3])) * beat_s / frame_s))
        step = int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
        idx = int(np.clip(np.searchsorted(notes, current) + step, 0, len(notes) - 1))
        current = float(notes[idx])
        seg = np.full(min(length, n_frames - i), current)
        if rng.random() < 0.3:  # scoop up into the note
            scoop = min(len(seg), int(0.08 / frame_s))
            seg[:scoop] -= np.linspace(rng.uniform(0.5, 2), 0, scoop)
        pitch[i : i + len(seg)] = seg
        i += len(seg)
    glide = max(1, int(rng.uniform(0.01, 0.06) / frame_s))
    pitch = scipy.signal.lfilter([1 / glide], [1, 1 / glide - 1], pitch, zi=[pitch[0] * (1 - 1 / glide)])[0]
    t = np.arange(n_frames) * frame_s
    vib_depth = rng.uniform(0.0, 0.6)  # semitones
    vibrato = vib_depth * np.sin(2 * np.pi * rng.uniform(4.5, 7) * t + rng.uniform(0, 6)) * np.clip(t % 2.0, 0, 1)
    drift = np.cumsum(rng.normal(0, 0.01, n_frames))
    drift -= scipy.signal.savgol_filter(drift, min(n_frames // 2 * 2 - 1, 401), 1) if n_frames > 5 else 0
    return 440.0 * 2 ** ((pitch + vibrato + drift + rng.normal(0, 0.03, n_frames) - 69) / 12)


def warp_envelope(sp: np.ndarray, factor: float) -> np.ndarray:
    """Shift formants by `factor` (>1 higher, 'female'; <1 lower, 'male') by resampling the envelope's axis."""
    bins = np.arange(sp.shape[1])
    return np.stack([np.interp(bins / factor, bins, row, right=row[-1]) for row in sp])


@dataclass
class Phrase:
    """WORLD parameters of one sung phrase, ready to synthesise."""

    rate: int
    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray


def sung_phrase(source: VoiceSource, song: Song, rng: np.random.Generator, seconds: float) -> Phrase:
    """About `seconds` of `source` with new timing, melody, formants and breathiness."""
    n_out = max(8, int(seconds * 1000 / FRAME_MS))
    speed = rng.uniform(0.6, 1.4)
    span = min(len(source.f0) - 1, int(n_out * speed))
    start = int(rng.integers(0, max(1, len(source.f0) - span)))
    idx = np.clip(np.round(start + np.linspace(0, span, n_out)).astype(int), 0, len(source.f0) - 1)
    formant = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    voiced = source.voiced[idx]
    base = 48 + int(round(12 * np.log2(formant) * 2)) + int(rng.integers(-3, 8))
    f0 = melody_f0(song, rng, n_out, base, base + int(rng.integers(9, 17))) * voiced
    sp = warp_envelope(source.sp[idx], formant)
    sp *= np.exp(np.linspace(0, rng.uniform(-2, 2), sp.shape[1]))[None, :]  # spectral tilt
    ap = np.clip(source.ap[idx], 1e-6, 1.0) ** rng.uniform(0.4, 1.6)  # breathy (<1) ... pressed (>1)
    return Phrase(source.rate, f0, sp, ap)


def render(phrase: Phrase, semitones: float = 0.0) -> np.ndarray:
    """The phrase synthesised at RATE, its melody moved by `semitones` (a harmony line when not 0)."""
    pw = import_pyworld()
    f0, sp, ap = (np.ascontiguousarray(a) for a in (phrase.f0 * 2 ** (semitones / 12), phrase.sp, phrase.ap))
    y = pw.synthesize(f0, sp, ap, phrase.rate, FRAME_MS)
    return resample(y, phrase.rate, RATE, "polyphase").astype(np.float32)


def _peq(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random peaking EQ band (+-6 dB) and a gentle high-pass."""
    freq, gain, q = rng.uniform(200, 8000), rng.uniform(-6, 6), rng.uniform(0.5, 2)
    a = 10 ** (gain / 40)
    w = 2 * np.pi * freq / RATE
    alpha = np.sin(w) / (2 * q)
    b = [1 + alpha * a, -2 * np.cos(w), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w), 1 - alpha / a]
    wave = scipy.signal.lfilter(b, den, wave)
    hp = scipy.signal.butter(2, rng.uniform(60, 150), "highpass", fs=RATE, output="sos")
    return scipy.signal.sosfilt(hp, wave)


def _reverb(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stereo reverb from exponentially decaying noise; (n,) -> (2, n)."""
    rt = rng.uniform(0.2, 2.0)
    n = int(rt * RATE)
    decay = np.exp(-6.9 * np.arange(n) / n)
    wet = rng.uniform(0.0, 0.35)
    out = []
    for _ in range(2):
        ir = rng.standard_normal(n) * decay
        ir /= np.sqrt(np.sum(ir**2))
        out.append(wave + wet * scipy.signal.fftconvolve(wave, ir)[: len(wave)])
    return np.stack(out)


def _place(track: np.ndarray, wave: np.ndarray, start: int) -> None:
    """Add `wave` into `track` from sample `start` with 10 ms fades, cut at the track's end."""
    fade = np.minimum(1, np.minimum(np.arange(len(wave)), np.arange(len(wave))[::-1]) / 441)
    seg = (wave * fade)[: max(0, len(track) - start)]
    track[start : start + len(seg)] += seg


def _place_in_room(dry: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Reverb and a pan: (n,) -> (2, n)."""
    wave = _reverb(dry, rng)
    pan = rng.uniform(-0.3, 0.3)
    return wave * np.array([[1 - pan], [1 + pan]])


def vocal_track(
    sources: list[VoiceSource],
    song: Song,
    rng: np.random.Generator,
    seconds: float,
    espeak: Callable[[], VoiceSource] | None,
    harmony_share: float = 0.0,
) -> np.ndarray:
    """Phrases with rests from one voice per song (sometimes two), then EQ, reverb, double and level: (2, n).

    With probability `harmony_share` the song also gets backing vocals: most phrases sung again a fixed interval
    away, later and quieter, with their own EQ, reverb and pan. At 0 the random stream is the one of earlier
    releases, so a seed keeps giving the same data set."""
    n = int(seconds * RATE)
    dry, backing = np.zeros(n), np.zeros(n)
    harmonised = harmony_share > 0 and rng.random() < harmony_share
    pick = lambda: sources[rng.integers(len(sources))] if (espeak is None or rng.random() < 0.55) else espeak()  # noqa: E731
    voice = pick()
    t = rng.uniform(0, 2)
    while t < seconds - 0.5:
        if rng.random() < 0.15:
            voice = pick()
        length = min(rng.uniform(1.5, 6.0), seconds - t)
        phrase = sung_phrase(voice, song, rng, length)
        start = int(t * RATE)
        _place(dry, render(phrase), start)
        if harmonised and rng.random() < 0.7:
            interval = float(rng.choice(HARMONY_SEMITONES))
            lag = int(rng.uniform(0.0, 0.04) * RATE)
            _place(backing, rng.uniform(0.3, 0.7) * render(phrase, interval), start + lag)
        t += length + rng.uniform(0.2, 2.5)
    dry = _peq(dry, rng)
    if rng.random() < 0.3:  # double: a delayed, slightly detuned copy (linear-interpolated speed change)
        copy = np.interp(np.arange(n) * (1 + rng.uniform(-0.003, 0.003)), np.arange(n), dry, right=0.0)
        dry = dry + 0.5 * np.roll(copy, int(rng.integers(200, 1500)))
    wave = _place_in_room(dry, rng)
    if harmonised:
        wave = wave + _place_in_room(_peq(backing, rng), rng)
    level = np.interp(np.arange(n), np.linspace(0, n, 6), rng.uniform(0.6, 1.2, 6))
    return (wave * level).astype(np.float32)
