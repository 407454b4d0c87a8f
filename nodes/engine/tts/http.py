"""The http backend: the user's own TTS service (IndexTTS2, CosyVoice, an OpenAI-compatible server...).

Two request shapes cover the common servers:
- ``openai``: ``POST {url}`` with ``{"model", "input", "voice", "speed", "response_format": "wav"}``
  (OpenAI's /v1/audio/speech, which most self-hosted servers imitate); the answer is the audio.
- ``json``: a generic JSON body whose field names are configured (``text_field``, ``voice_field``,
  ``speed_field``...), plus fixed ``extra`` fields; the answer is the audio itself, or JSON with
  the audio base64-encoded under ``response_field``.

Emotion settings (IndexTTS2-style ``emotion`` / ``emotion_intensity``) are sent only when an
emotion is given, so servers that do not know them are not confused by empty fields.

Secrets never live in a workflow: a bearer token comes from the environment variable named
by ``auth_env`` (default SONIC_TTS_API_KEY, sent when set), and a header whose value is
``env:VAR`` reads VAR. Connection errors, timeouts and 5xx answers are retried with
exponential backoff and full jitter (a service behind a load balancer sheds load with 503);
4xx answers are not, since the request itself is wrong. Every failure is one line that names
the service and says what to do.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import SonicInputError, SonicServiceError
from ..types import Audio

FORMATS = ("openai", "json")
DEFAULT_AUTH_ENV = "SONIC_TTS_API_KEY"
SILENCE_PEAK = 1e-4  # -80 dBFS: below this, the service answered silence


@dataclass
class HttpOptions:
    """The ``http_options`` JSON of the node, as plain data (printable, testable)."""

    model: str = "tts-1"
    text_field: str = "text"
    voice_field: str = "voice"
    speed_field: str | None = "speed"
    emotion_field: str = "emotion"
    emotion_intensity_field: str = "emotion_intensity"
    response_field: str | None = None  # JSON answer: base64 audio under this key
    response_format: str = "wav"
    extra: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    auth_env: str = DEFAULT_AUTH_ENV
    timeout: float = 60.0  # seconds to wait for one answer
    connect_timeout: float = 5.0
    retries: int = 3  # retries after the first try (5xx, timeouts, connection errors)
    backoff: float = 0.5  # first retry waits up to this long; doubles each time (full jitter)
    voices_url: str | None = None  # GET -> list of voices, to check the voice before synthesising

    @classmethod
    def parse(cls, text: str | dict | None, input_name: str = "http_options") -> HttpOptions:
        """From the node's JSON text; an unknown key or a wrong type is a SonicInputError."""
        if isinstance(text, dict):
            data = text
        elif not text or not str(text).strip():
            data = {}
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SonicInputError(
                    input_name,
                    f"not valid JSON ({exc.msg} at line {exc.lineno})",
                    'give an object such as {"timeout": 30}',
                ) from None
        if not isinstance(data, dict):
            raise SonicInputError(
                input_name, "expected a JSON object", 'give an object such as {"timeout": 30}'
            )
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            raise SonicInputError(
                input_name, f"unknown option {unknown[0]!r}", f"use any of: {', '.join(known)}"
            )
        options = cls(**data)
        for name in ("timeout", "connect_timeout", "backoff"):
            value = getattr(options, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
                raise SonicInputError(input_name, f"{name} = {value!r}", f"give {name} in seconds, 0 to 3600")
        if (
            isinstance(options.retries, bool)
            or not isinstance(options.retries, int)
            or not 0 <= options.retries <= 10
        ):
            raise SonicInputError(
                input_name, f"retries = {options.retries!r}", "give a whole number from 0 to 10"
            )
        for name in ("extra", "headers"):
            if not isinstance(getattr(options, name), dict):
                raise SonicInputError(
                    input_name, f"{name} must be an object", f'e.g. "{name}": {{"key": "value"}}'
                )
        return options

    def public(self) -> dict:
        """The options without anything secret (headers named, never their values): for the cache key."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["headers"] = sorted(self.headers)
        return data


@dataclass(frozen=True)
class Answer:
    """What the service sent back (status, content type, body)."""

    status: int
    content_type: str
    body: bytes


class HttpBackend:
    """Synthesises through the user's TTS service; thread-safe (one requests.Session per call)."""

    name = "http"

    def __init__(self, url: str, request_format: str = "openai", options: HttpOptions | None = None) -> None:
        url = (url or "").strip()
        if not url.startswith(("http://", "https://")):
            raise SonicInputError(
                "url",
                f"{url!r} is not an http(s) URL" if url else "empty",
                "give the TTS service's URL, e.g. http://tts:8000/v1/audio/speech",
            )
        if request_format not in FORMATS:
            raise SonicInputError(
                "request_format", f"{request_format!r} is unknown", f"use one of: {', '.join(FORMATS)}"
            )
        self.url = url
        self.request_format = request_format
        self.options = options or HttpOptions()
        self._voices: list[str] | None = None

    def identity(self) -> dict:
        return {
            "backend": self.name,
            "url": self.url,
            "format": self.request_format,
            "options": self.options.public(),
        }

    # ------------------------------------------------------------------ request
    def headers(self) -> dict[str, str]:
        """Auth and custom headers, values read from the environment where they say env:VAR."""
        out = {"Accept": "audio/wav, audio/*;q=0.9, application/json;q=0.5"}
        token = os.environ.get(self.options.auth_env or "", "")
        if token:
            out["Authorization"] = f"Bearer {token}"
        for name, value in self.options.headers.items():
            value = str(value)
            if value.startswith("env:"):
                var = value[4:]
                if var not in os.environ:
                    raise SonicServiceError(
                        f"tts http_options.headers {name}: environment variable {var} is not set where "
                        "ComfyUI runs; set it there (secrets are never stored in the workflow)"
                    )
                value = os.environ[var]
            out[str(name)] = value
        return out

    def body(self, text: str, voice: str, speed: float, emotion: str = "", intensity: float = 0.0) -> dict:
        o = self.options
        if self.request_format == "openai":
            body: dict[str, Any] = {
                "model": o.model,
                "input": text,
                "voice": voice,
                "speed": speed,
                "response_format": o.response_format,
            }
            emotion_keys = ("emotion", "emotion_intensity")
        else:
            body = {o.text_field: text, o.voice_field: voice}
            if o.speed_field:
                body[o.speed_field] = speed
            emotion_keys = (o.emotion_field, o.emotion_intensity_field)
        if emotion:
            body[emotion_keys[0]] = emotion
            body[emotion_keys[1]] = intensity
        return {**o.extra, **body}

    def post(self, body: dict) -> Answer:
        """POST with retries on connection errors, timeouts and 5xx; the last failure as one line."""
        import requests

        o = self.options
        headers = self.headers()
        last = ""
        for attempt in range(o.retries + 1):
            if attempt:
                time.sleep(random.uniform(0, o.backoff * 2 ** (attempt - 1)))
            try:
                with requests.Session() as session:
                    r = session.post(
                        self.url, json=body, headers=headers, timeout=(o.connect_timeout, o.timeout)
                    )
                answer = Answer(r.status_code, r.headers.get("content-type", ""), r.content)
            except requests.Timeout:
                last = f"no answer within {o.timeout:g} s"
                continue
            except requests.ConnectionError as exc:
                last = f"cannot connect ({_reason(exc)})"
                continue
            if answer.status >= 500:
                last = f"HTTP {answer.status}{_snippet(answer)}"
                continue
            if answer.status >= 400:
                raise self._client_error(answer, body)
            return answer
        raise SonicServiceError(
            f"tts service {self.url}: {last} after {o.retries + 1} tries; check that it is running "
            "and reachable from this machine (http_options retries/timeout set the patience)"
        )

    def _client_error(self, answer: Answer, body: dict) -> Exception:
        detail = _snippet(answer)
        if answer.status in (401, 403):
            return SonicServiceError(
                f"tts service {self.url}: HTTP {answer.status}, the credentials were refused{detail}; "
                f"set the token in ${self.options.auth_env} (or http_options.headers) where ComfyUI runs"
            )
        if answer.status == 404:
            return SonicServiceError(
                f"tts service {self.url}: HTTP 404{detail}; check the URL (OpenAI-style servers use /v1/audio/speech)"
            )
        voice = body.get("voice", body.get(self.options.voice_field))
        if voice is not None and str(voice).casefold() in detail.casefold():
            return SonicInputError(
                "voice", f"the tts service refused voice {voice!r}{detail}", "use a voice the service has"
            )
        return SonicInputError(
            "text",
            f"the tts service refused the request (HTTP {answer.status}{detail})",
            "check the text, voice and http_options",
        )

    # ------------------------------------------------------------------ voices
    def check(self, text: str, voice: str, input_name: str = "voice") -> None:
        """With ``voices_url`` set: the voice is one the service lists (else the list is in the error)."""
        if not (voice or "").strip():
            raise SonicInputError(input_name, "empty", "give the name of a voice the tts service has")
        if not self.options.voices_url:
            return
        names = self.voices()
        if voice not in names:
            raise SonicInputError(
                input_name, f"the tts service has no voice {voice!r}", f"use one of: {', '.join(names)}"
            )

    def voices(self) -> list[str]:
        if self._voices is None:
            import requests

            try:
                r = requests.get(
                    self.options.voices_url,
                    headers=self.headers(),
                    timeout=(self.options.connect_timeout, self.options.timeout),
                )
                r.raise_for_status()
                data = r.json()
            except (requests.RequestException, ValueError) as exc:
                raise SonicServiceError(
                    f"tts voices list {self.options.voices_url}: {_reason(exc)}; fix voices_url or remove it"
                ) from None
            items = data.get("voices", data) if isinstance(data, dict) else data
            names = []
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    item = item.get("id") or item.get("name") or item.get("voice_id") or item.get("voice")
                if item is not None:
                    names.append(str(item))
            self._voices = names
        return self._voices

    # ------------------------------------------------------------------ synthesis
    def synthesize(
        self, text: str, voice: str, speed: float, emotion: str = "", intensity: float = 0.0
    ) -> Audio:
        answer = self.post(self.body(text, voice, speed, emotion, intensity))
        return self.decode(answer)

    def decode(self, answer: Answer) -> Audio:
        """The answer as audio; HTML, JSON without audio, 0 bytes or silence are SonicServiceErrors."""
        where = f"tts service {self.url}"
        body = answer.body
        kind = answer.content_type.split(";")[0].strip().lower()
        if not body:
            raise SonicServiceError(
                f"{where}: answered 0 bytes (HTTP {answer.status}); check the service's log"
            )
        head = body[:512].lstrip().lower()
        if kind in ("text/html", "application/xhtml+xml") or head.startswith((b"<!doctype html", b"<html")):
            raise SonicServiceError(
                f"{where}: answered an HTML page, not audio{_snippet(answer)}; is the URL the speech endpoint "
                "(not a login page or a proxy's error page)?"
            )
        if kind.endswith("json") or head.startswith((b"{", b"[")):
            body = self._audio_from_json(answer)
        audio = decode_audio(body, where)
        if float(np.abs(audio.samples).max(initial=0.0)) < SILENCE_PEAK:
            raise SonicServiceError(
                f"{where}: answered {audio.duration:.2f} s of silence; check the voice and the service's log"
            )
        return audio

    def _audio_from_json(self, answer: Answer) -> bytes:
        field_name = self.options.response_field
        try:
            data = json.loads(answer.body)
        except (ValueError, UnicodeDecodeError):
            data = None
        value = data.get(field_name) if isinstance(data, dict) and field_name else None
        if not isinstance(value, str):
            hint = (
                f"its JSON has no text field {field_name!r}"
                if field_name
                else "set http_options.response_field to the JSON key that holds base64 audio"
            )
            raise SonicServiceError(
                f"tts service {self.url}: answered JSON, not audio{_snippet(answer)}; {hint}"
            )
        if value.startswith("data:") and "," in value:
            value = value.split(",", 1)[1]
        try:
            return base64.b64decode(value, validate=False)
        except ValueError:
            raise SonicServiceError(f"tts service {self.url}: {field_name!r} is not base64 audio") from None


def decode_audio(data: bytes, where: str) -> Audio:
    """Any container/codec FFmpeg reads (WAV, MP3, FLAC, Opus...) -> mono float32."""
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise SonicServiceError(f"{where}: the answer has no audio stream")
            chunks, rate = [], 0
            resampler = None
            for frame in container.decode(container.streams.audio[0]):
                if resampler is None:
                    rate = int(frame.sample_rate)
                    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise SonicServiceError(
            f"{where}: the answer is not audio that FFmpeg can decode ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if samples.size == 0 or rate <= 0:
        raise SonicServiceError(f"{where}: the answer decodes to no audio samples")
    return Audio(samples=np.clip(samples, -1.0, 1.0)[None, :], sample_rate=rate)


def _snippet(answer: Answer) -> str:
    """A short, printable piece of an error body (HTML tags dropped)."""
    import re

    text = answer.body[:600].decode("utf-8", "replace")
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())[:160]
    return f": {text}" if text else ""


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:160] if text else type(exc).__name__
