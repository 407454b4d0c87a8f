"""The espeak-ng backend: Debian's `espeak-ng` program, run as a subprocess.

Why a subprocess and not a Python binding: the program is what every distribution packages
(no weights, no GPU, ~130 languages), its command line is stable across versions, and a crash
in it cannot take ComfyUI down. The text goes in on stdin (never on the command line, where
a text starting with "-" would read as an option); the WAV comes back in a temp file.

Voices are what the installed program lists (`espeak-ng --voices`): a language code such as
`en-us` or `de`, a voice name (`English_(America)`), a voice file (`gmw/en-US`), optionally
with a variant after "+" (`en-us+f3`, variants from `espeak-ng --voices=variant`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SonicInputError, SonicModelError, SonicServiceError
from ..types import Audio
from .text import scripts_used

PROGRAM = "espeak-ng"
DEFAULT_VOICE = "en-us"
BASE_WPM = 175  # espeak-ng's default speaking rate; speed 1.0
TIMEOUT_S = 120.0
INSTALL_HINT = (
    "install Debian's espeak-ng package where ComfyUI runs (sudo apt-get install espeak-ng; "
    "macOS: brew install espeak-ng), or choose the http backend"
)

# Scripts each language writes in, by the language code's first part (espeak-ng 1.51's list).
# Not listed: Latin only. Every voice also reads Latin letters (it switches to English).
_LANGUAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("ru", "uk", "be", "bg", "mk", "ba", "cv", "kk", "ky", "tt", "nog", "sr"), ("Cyrillic",)),
    **dict.fromkeys(("el", "grc"), ("Greek",)),
    **dict.fromkeys(("ar", "fa", "ur", "sd", "ug"), ("Arabic",)),
    "he": ("Hebrew",),
    **dict.fromkeys(("hi", "mr", "ne", "kok"), ("Devanagari",)),
    **dict.fromkeys(("bn", "as", "bpy"), ("Bengali",)),
    "gu": ("Gujarati",),
    "pa": ("Gurmukhi",),
    "ta": ("Tamil",),
    "te": ("Telugu",),
    "kn": ("Kannada",),
    "ml": ("Malayalam",),
    "si": ("Sinhala",),
    "or": ("Oriya",),
    "my": ("Myanmar",),
    "shn": ("Myanmar",),
    "th": ("Thai",),
    "ka": ("Georgian",),
    **dict.fromkeys(("hy", "hyw"), ("Armenian",)),
    "am": ("Ethiopic",),
    "chr": ("Cherokee",),
    "ja": ("Han", "Kana"),
    "ko": ("Hangul",),
    **dict.fromkeys(("cmn", "yue", "hak", "zh"), ("Han",)),
}


@dataclass(frozen=True)
class EspeakVoice:
    language: str  # "en-us"
    name: str  # "English_(America)"
    file: str  # "gmw/en-US"

    @property
    def scripts(self) -> tuple[str, ...]:
        if self.language.endswith("-latn") or "-latn-" in self.language:
            return ("Latin",)
        return ("Latin", *_LANGUAGE_SCRIPTS.get(self.language.split("-")[0], ()))


def program() -> str:
    """The espeak-ng executable, or SonicModelError naming the package to install.

    SonicModelError on purpose: a host without the program cannot run a text workflow at all,
    so the runner sends the job to another host instead of retrying here.
    """
    found = shutil.which(os.environ.get("SONIC_ESPEAK", PROGRAM))
    if not found:
        raise SonicModelError(f"espeak-ng is not installed on this machine; {INSTALL_HINT}")
    return found


def _run(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [program(), *args], input=stdin, capture_output=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise SonicServiceError(f"espeak-ng did not finish within {TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise SonicModelError(
            f"espeak-ng cannot be started ({exc.strerror or exc}); {INSTALL_HINT}"
        ) from None


@functools.lru_cache(maxsize=4)
def _listing(executable: str, kind: str) -> str:
    result = _run([f"--voices={kind}"] if kind else ["--voices"])
    return result.stdout.decode("utf-8", "replace")


def voices() -> list[EspeakVoice]:
    """The voices the installed espeak-ng has (cached per executable)."""
    found = []
    for line in _listing(program(), "").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            found.append(EspeakVoice(language=parts[1], name=parts[3], file=parts[4]))
    return found


def variants() -> list[str]:
    """Voice variants ("f3", "klatt", ...) for "voice+variant"."""
    names = []
    for line in _listing(program(), "variant").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            names.append(parts[4].removeprefix("!v/"))
    return names


def voice_names() -> list[str]:
    """The language codes a user picks from (the node's voice list)."""
    return [v.language for v in voices()]


def find_voice(voice: str, input_name: str = "voice") -> tuple[EspeakVoice, str | None]:
    """(the voice, its variant or None), or SonicInputError listing the voices that exist."""
    wanted = (voice or "").strip()
    base, _, variant = wanted.partition("+")
    key = base.casefold()
    available = voices()
    for v in available:
        if key in (v.language.casefold(), v.name.casefold(), v.file.casefold()):
            break
    else:
        raise SonicInputError(
            input_name,
            f"espeak-ng has no voice {wanted!r}",
            f"use one of: {', '.join(v.language for v in available)} (optionally +variant, e.g. en-us+f3)",
        )
    if variant:
        known = {name.casefold(): name for name in variants()}
        if variant.casefold() not in known:
            raise SonicInputError(
                input_name,
                f"espeak-ng has no voice variant {variant!r}",
                f"use one of: {', '.join(sorted(known.values(), key=str.casefold))}",
            )
        variant = known[variant.casefold()]
    return v, variant or None


class EspeakBackend:
    """Synthesises with the local espeak-ng program (no weights, CPU only)."""

    name = "espeak-ng"

    def identity(self) -> dict:
        """What the cache key needs besides text and settings: the program and its version."""
        return {"backend": self.name, "program": program()}

    def check(self, text: str, voice: str, input_name: str = "voice") -> None:
        """The voice exists and reads the text's script (Cyrillic text on an English voice is refused)."""
        found, _ = find_voice(voice, input_name)
        foreign = {s: n for s, n in scripts_used(text).items() if s not in found.scripts}
        if foreign:
            script = max(foreign, key=foreign.get)
            suitable = [v.language for v in voices() if script in v.scripts]
            fix = (
                f"choose a voice for it, e.g. {', '.join(suitable[:8])}"
                if suitable
                else "espeak-ng has no voice for it; use the http backend with a service that speaks it"
            )
            raise SonicInputError(
                "text",
                f"the text has {sum(foreign.values())} letter(s) in {script} script, which voice "
                f"{voice!r} ({found.name}) cannot read",
                fix,
            )

    def synthesize(
        self, text: str, voice: str, speed: float, emotion: str = "", intensity: float = 0.0
    ) -> Audio:
        """One chunk of text -> mono float32 audio at espeak-ng's rate (22050 Hz)."""
        found, variant = find_voice(voice)
        name = found.language + (f"+{variant}" if variant else "")
        wpm = int(round(min(max(BASE_WPM * speed, 80), 450)))
        with tempfile.TemporaryDirectory(prefix="sonic-espeak-") as tmp:
            out = Path(tmp) / "speech.wav"
            result = _run(["-b", "1", "-v", name, "-s", str(wpm), "-w", str(out)], stdin=text.encode("utf-8"))
            if result.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
                detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
                raise SonicServiceError(
                    f"espeak-ng failed for voice {name!r} (exit {result.returncode}"
                    f"{': ' + detail[0] if detail else ''}); check the voice with espeak-ng --voices"
                )
            return read_wav(out)


def read_wav(path: Path) -> Audio:
    """A 16-bit PCM WAV (what espeak-ng writes) as mono float32."""
    with wave.open(str(path), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise SonicServiceError(f"espeak-ng wrote {8 * width}-bit audio; expected 16-bit PCM")
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    samples = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
    return Audio(samples=samples[None, :].astype(np.float32, copy=False), sample_rate=int(rate))
