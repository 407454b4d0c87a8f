"""SONIC_TextToSpeech: text -> core AUDIO, with espeak-ng on this machine or the user's own TTS service."""

from __future__ import annotations

import functools
from typing import Any

from .engine.tts.http import FORMATS

BACKENDS = ("espeak-ng", "http")
DEFAULT_TEXT = "Hello! I am a talking portrait. Type any text here, and I will say it."


@functools.lru_cache(maxsize=1)
def _espeak_voices_hint() -> str:
    """The installed espeak-ng voices, for the voice tooltip (never fails: ComfyUI calls this on load)."""
    try:
        from .engine.tts.espeak import voice_names

        names = voice_names()
    except Exception:  # noqa: BLE001 - espeak-ng missing or broken: the node says so when it runs
        return "espeak-ng is not installed here (apt-get install espeak-ng)."
    return f"espeak-ng voices here: {', '.join(names)}; add +variant for another timbre (e.g. en-us+f3)."


class SONIC_TextToSpeech:
    """Thin node over engine.tts.synthesize(); the engine does every check and all the work."""

    CATEGORY = "Sonic"
    FUNCTION = "speak"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("The spoken text as core AUDIO (mono), for SONIC_PreData or any audio node.",)
    DESCRIPTION = (
        "Speaks a text with espeak-ng (local, CPU, no weights) or your own TTS service over HTTP "
        "(OpenAI-compatible or a JSON API). The clip lasts as long as the speech."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "text": (
                    "STRING",
                    {
                        "default": DEFAULT_TEXT,
                        "multiline": True,
                        "tooltip": "What the portrait says. Long texts are spoken sentence by sentence; "
                        "markup and control characters are removed.",
                    },
                ),
                "backend": (
                    list(BACKENDS),
                    {
                        "default": "espeak-ng",
                        "tooltip": "espeak-ng: local and robotic, needs Debian's espeak-ng package. "
                        "http: your TTS service at url (IndexTTS2, CosyVoice, an OpenAI-compatible server...).",
                    },
                ),
                "voice": (
                    "STRING",
                    {
                        "default": "en-us",
                        "tooltip": "espeak-ng: a language code. http: the "
                        "service's voice or speaker name. " + _espeak_voices_hint(),
                    },
                ),
                "speed": (
                    "FLOAT",
                    {"default": 1.0, "min": 0.25, "max": 4.0, "step": 0.05, "tooltip": "1 = normal pace."},
                ),
            },
            "optional": {
                "url": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "http backend: the speech endpoint, e.g. http://tts:8000/v1/audio/speech",
                    },
                ),
                "request_format": (
                    list(FORMATS),
                    {
                        "default": "openai",
                        "tooltip": "openai: /v1/audio/speech body (model, input, voice, speed). json: a JSON "
                        "body with the field names set in http_options (text_field, voice_field...).",
                    },
                ),
                "http_options": (
                    "STRING",
                    {
                        "default": "{}",
                        "multiline": True,
                        "tooltip": "JSON: model, text_field, voice_field, speed_field, response_field, extra, "
                        'headers ({"X-Api-Key": "env:VAR"}), auth_env (bearer token variable, default '
                        "SONIC_TTS_API_KEY), timeout, retries, backoff, voices_url. Secrets stay in the environment.",
                    },
                ),
                "emotion": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "http backend: an emotion for services that take one (IndexTTS2 "
                        "style), e.g. happy; empty = none.",
                    },
                ),
                "emotion_intensity": (
                    "FLOAT",
                    {
                        "default": 0.5,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.05,
                        "tooltip": "Strength of the emotion (0-1).",
                    },
                ),
                "concurrency": (
                    "INT",
                    {
                        "default": 1,
                        "min": 1,
                        "max": 8,
                        "tooltip": "Sentences synthesised at once (in order).",
                    },
                ),
            },
        }

    def speak(
        self,
        text: str,
        backend: str = "espeak-ng",
        voice: str = "en-us",
        speed: float = 1.0,
        url: str = "",
        request_format: str = "openai",
        http_options: str = "{}",
        emotion: str = "",
        emotion_intensity: float = 0.5,
        concurrency: int = 1,
    ) -> dict[str, Any]:
        """Returns {"ui": {"text": [...]}, "result": (AUDIO,)}; the text says what was spoken and cached."""
        from . import comfy_bridge
        from .engine.errors import SonicInputError
        from .engine.tts import EspeakBackend, HttpBackend, HttpOptions, SpeechRequest, synthesize
        from .frames_io import audio_to_comfy
        from .input_check import check_numbers

        check_numbers(
            type(self), {"speed": speed, "emotion_intensity": emotion_intensity, "concurrency": concurrency}
        )
        if backend == "espeak-ng":
            engine = EspeakBackend()
        elif backend == "http":
            engine = HttpBackend(url, request_format, HttpOptions.parse(http_options))
        else:
            raise SonicInputError("backend", f"{backend!r} is unknown", f"use one of: {', '.join(BACKENDS)}")
        bar = None

        def on_sentence(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = comfy_bridge.progress(total, "speech")
            bar.update(1)
            comfy_bridge.throw_if_interrupted()

        request = SpeechRequest(
            text=text,
            voice=str(voice).strip(),
            speed=speed,
            emotion=str(emotion or "").strip(),
            emotion_intensity=emotion_intensity,
        )
        speech = synthesize(request, engine, concurrency=concurrency, on_sentence=on_sentence)
        audio = speech.audio
        summary = (
            f"{audio.duration:.2f} s of speech from {speech.sentences} sentence(s) with {backend} "
            f"voice {request.voice}" + (f"; {speech.cached} from the cache" if speech.cached else "")
        )
        return {
            "ui": {"text": [*speech.notes, summary]},
            "result": (audio_to_comfy(audio),),  # waveform [1, C, N]
        }
