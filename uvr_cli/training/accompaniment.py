"""Accompaniment for `uvr dataset synth`: random General MIDI arrangements rendered by fluidsynth.

Each song draws a tempo, key, scale and chord progression (`Song`); drums, bass, chords, a lead line and an
arpeggio are each present with some probability, with random programs, levels, pans and grooves. The arrangement is
written as a format-0 Standard MIDI File and rendered with a GM soundfont.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from uvr_cli.engine.resample import fix_length
from uvr_cli.errors import UsageError

RATE = 44100  # every generated stem is at this rate
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2")
# GM programs (0-based) for each role; choirs and synth voices (52-54, 85) are left out: they would read as vocals.
BASS_PROGRAMS = tuple(range(32, 40))
CHORD_PROGRAMS = (0, 1, 2, 4, 5, 16, 17, 18, 19, 24, 25, 26, 27, 29, 30, 48, 49, 50, 51, 61, 62, 88, 89, 90, 92, 94)
LEAD_PROGRAMS = (0, 6, 8, 11, 12, 13, 21, 22, 40, 41, 56, 57, 60, 64, 65, 66, 68, 71, 73, 80, 81, 105, 110)
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dorian": (0, 2, 3, 5, 7, 9, 10)}
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (5, 3, 0, 4), (0, 0, 3, 4), (0, 6, 5, 4), (1, 4, 0, 0))


def find_soundfont(path: str | None) -> Path:
    """The given soundfont, else the first installed GM soundfont; UsageError if none."""
    candidates = [path] if path else list(SOUNDFONTS)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise UsageError(f"no General MIDI soundfont found ({', '.join(candidates)}): apt-get install fluid-soundfont-gm")


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(events: list[tuple[float, bytes]], bpm: float, ppq: int = 480) -> bytes:
    """A format-0 Standard MIDI File from (time in beats, raw message) events."""
    tempo = round(60_000_000 / bpm)
    track = bytearray(b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big"))
    last = 0
    for beat, message in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80)):
        tick = max(0, round(beat * ppq))
        track += _vlq(tick - last) + message
        last = tick
    track += b"\x00\xff\x2f\x00"
    return (
        b"MThd"
        + (6).to_bytes(4, "big")
        + (0).to_bytes(2, "big")
        + (1).to_bytes(2, "big")
        + ppq.to_bytes(2, "big")
        + b"MTrk"
        + len(track).to_bytes(4, "big")
        + bytes(track)
    )


@dataclass(frozen=True)
class Song:
    """The musical frame a song's parts share."""

    bpm: float
    key: int  # MIDI note of the tonic, octave 4
    scale: tuple[int, ...]
    progression: tuple[int, ...]
    bars: int

    def chord_root(self, bar: int) -> int:
        degree = self.progression[bar % len(self.progression)]
        return self.key + self.scale[degree % 7]

    def chord(self, bar: int) -> list[int]:
        degree = self.progression[bar % len(self.progression)]
        return [self.key + self.scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]

    def scale_notes(self, low: int, high: int) -> list[int]:
        return [n for n in range(low, high + 1) if (n - self.key) % 12 in self.scale]


def random_song(rng: np.random.Generator, seconds: float) -> Song:
    bpm = float(rng.uniform(70, 160))
    bars = max(1, math.ceil(seconds / (4 * 60 / bpm)))
    scale = SCALES[rng.choice(list(SCALES))]
    return Song(bpm, int(rng.integers(55, 67)), scale, PROGRESSIONS[rng.integers(len(PROGRESSIONS))], bars)


def _note(
    events: list[tuple[float, bytes]], channel: int, beat: float, length: float, pitch: int, velocity: int
) -> None:
    pitch = int(np.clip(pitch, 0, 127))
    velocity = int(np.clip(velocity, 1, 127))
    events.append((beat, bytes([0x90 | channel, pitch, velocity])))
    events.append((beat + length, bytes([0x80 | channel, pitch, 0])))


def arrangement(song: Song, rng: np.random.Generator) -> list[tuple[float, bytes]]:
    """Drums, bass, chords and a lead line, each present with some probability, with their programs and levels."""
    events: list[tuple[float, bytes]] = []
    swing = float(rng.choice([0.0, 0.0, 0.08, 0.16]))
    parts = {
        "drums": rng.random() < 0.85,
        "bass": rng.random() < 0.9,
        "chords": True,
        "lead": rng.random() < 0.6,
        "arp": rng.random() < 0.35,
    }
    for channel, (role, programs) in enumerate(
        (("bass", BASS_PROGRAMS), ("chords", CHORD_PROGRAMS), ("lead", LEAD_PROGRAMS), ("arp", CHORD_PROGRAMS))
    ):
        if parts[role]:
            events.append((0.0, bytes([0xC0 | channel, int(rng.choice(programs))])))
            events.append((0.0, bytes([0xB0 | channel, 7, int(rng.integers(70, 120))])))
            events.append((0.0, bytes([0xB0 | channel, 10, int(rng.integers(24, 104))])))
    events.append((0.0, bytes([0xB9, 7, int(rng.integers(70, 120))])))
    kick_pattern = [0, 2] if rng.random() < 0.6 else [0, 1.5, 2.5]
    hat_step = float(rng.choice([0.5, 0.25, 1.0]))
    chord_rhythm = (
        [(0, 4)] if rng.random() < 0.4 else [(b, 1) for b in range(4)] if rng.random() < 0.5 else [(0, 1.5), (1.5, 2.5)]
    )
    bass_rhythm = [(0, 2), (2, 2)] if rng.random() < 0.5 else [(b / 2, 0.5) for b in range(8)]
    for bar in range(song.bars):
        t0 = 4.0 * bar
        root, chord = song.chord_root(bar), song.chord(bar)
        if parts["drums"]:
            for b in kick_pattern:
                _note(events, 9, t0 + b, 0.25, 36, int(rng.integers(90, 127)))
            for b in (1, 3):
                _note(events, 9, t0 + b, 0.25, int(rng.choice([38, 40, 39])), int(rng.integers(80, 120)))
            for i in range(int(4 / hat_step)):
                b = i * hat_step + (swing if i % 2 else 0.0)
                _note(events, 9, t0 + b, 0.1, int(rng.choice([42, 42, 44, 46])), int(rng.integers(50, 100)))
            if bar % 4 == 3 and rng.random() < 0.5:
                _note(events, 9, t0 + 3.5, 0.25, int(rng.choice([49, 57, 45, 47, 50])), 110)
        if parts["bass"]:
            for b, length in bass_rhythm:
                pitch = root - 24 + (7 if rng.random() < 0.2 else 0)
                _note(events, 0, t0 + b, length * 0.9, pitch, int(rng.integers(80, 120)))
        for b, length in chord_rhythm:
            for pitch in chord:
                _note(
                    events, 1, t0 + b, length * 0.95, pitch - 12 * int(rng.random() < 0.3), int(rng.integers(55, 100))
                )
        if parts["lead"]:
            notes = song.scale_notes(song.key + 5, song.key + 24)
            b = 0.0
            while b < 4:
                length = float(rng.choice([0.5, 1.0, 1.0, 2.0]))
                if rng.random() < 0.75:
                    _note(events, 2, t0 + b, length * 0.9, int(rng.choice(notes)), int(rng.integers(60, 110)))
                b += length
        if parts["arp"]:
            for i in range(8):
                _note(events, 3, t0 + i / 2, 0.45, chord[i % 3] + 12, int(rng.integers(50, 90)))
    return events


def render_accompaniment(song: Song, rng: np.random.Generator, soundfont: Path, seconds: float) -> np.ndarray:
    """Render a random arrangement with fluidsynth: (2, RATE*seconds) float32."""
    with tempfile.TemporaryDirectory(prefix="uvr-synth-") as tmp:
        mid, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
        mid.write_bytes(midi_file(arrangement(song, rng), song.bpm))
        cmd = [
            "fluidsynth",
            "-ni",
            "-q",
            "-g",
            "0.5",
            "-r",
            str(RATE),
            "-F",
            str(wav),
            "-O",
            "float",
            str(soundfont),
            str(mid),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not wav.is_file():
            raise UsageError(f"fluidsynth failed: {done.stderr.strip()[:200]}")
        audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    return fix_length(audio.T, int(seconds * RATE))
