"""A fake TTS service on loopback, for the http backend's tests (and the node's).

It answers like the servers users put in front of Sonic, and misbehaves like them on demand:

- ``POST /v1/audio/speech``: OpenAI's shape ({"model", "input", "voice", "speed", ...}); the
  answer is a WAV whose length follows the text (0.06 s per character at speed 1), voiced
  syllables with pauses, so a lip-sync check has something to follow.
- ``POST /tts``: a generic JSON API ({"content", "speaker", ...}); with ``?b64=1`` the audio
  comes back base64-encoded in {"audio": ...}.
- ``GET /voices``: {"voices": [{"id": ...}]}.
- Misbehaviour, chosen by the path: ``/html`` (a proxy's HTML error page with status 200),
  ``/silence`` (a valid WAV of zeros), ``/empty`` (200 with 0 bytes), ``/json`` (JSON without
  audio), ``/slow`` (answers after ``slow_s``), ``/flaky`` (503 for the first ``fail_first``
  requests, then audio), ``/down`` (always 502), ``/auth`` (401 without the bearer token).
  An unknown voice is a 400 naming it, as IndexTTS-style servers do.

Every request body is kept in ``requests`` so tests can check what the backend sent.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np

RATE = 24_000
VOICES = ("alloy", "nova", "narrator")
TOKEN = "secret-token-123"


def speech_wav(text: str, speed: float = 1.0, rate: int = RATE, silent: bool = False) -> bytes:
    """A WAV of syllable-like tones as long as the text would take to say."""
    seconds = max(0.3, 0.06 * len(text) / max(speed, 0.1))
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(130 + 20 * np.sin(2 * np.pi * 0.5 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 10))
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 1.5
    signal = 0.0 * t if silent else 0.3 * voiced * envelope
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


class FakeTTS:
    """The server: ``with FakeTTS() as tts: tts.url("/v1/audio/speech")``."""

    def __init__(self, fail_first: int = 2, slow_s: float = 2.0) -> None:
        self.fail_first = fail_first
        self.slow_s = slow_s
        self.requests: list[dict] = []
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeTTS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def _count(self, path: str) -> int:
        with self._lock:
            self.calls[path] = self.calls.get(path, 0) + 1
            return self.calls[path]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                return None

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if urlparse(self.path).path == "/voices":
                    body = json.dumps({"voices": [{"id": v} for v in VOICES]}).encode()
                    return self._send(200, body, "application/json")
                return self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                parsed = urlparse(self.path)
                path, query = parsed.path, parse_qs(parsed.query)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return self._send(400, b'{"detail": "body is not JSON"}', "application/json")
                with fake._lock:
                    fake.requests.append(
                        {"path": path, "body": body, "authorization": self.headers.get("Authorization")}
                    )
                count = fake._count(path)
                if path == "/html":
                    page = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>nginx</body></html>"
                    return self._send(200, page, "text/html")
                if path == "/empty":
                    return self._send(200, b"", "audio/wav")
                if path == "/json":
                    return self._send(200, b'{"status": "queued", "task_id": 7}', "application/json")
                if path == "/down":
                    return self._send(502, b"<html>Bad Gateway</html>", "text/html")
                if path == "/flaky" and count <= fake.fail_first:
                    return self._send(503, b"overloaded, retry", "text/plain")
                if path == "/slow":
                    time.sleep(fake.slow_s)
                if path == "/auth" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, b'{"detail": "invalid token"}', "application/json")
                if path == "/tts":
                    text, voice = body.get("content"), body.get("speaker")
                else:
                    text, voice = body.get("input"), body.get("voice")
                if not isinstance(text, str) or not text:
                    return self._send(422, b'{"detail": "input is required"}', "application/json")
                if voice not in VOICES:
                    detail = json.dumps({"detail": f"unknown voice {voice}"}).encode()
                    return self._send(400, detail, "application/json")
                audio = speech_wav(text, float(body.get("speed") or 1.0), silent=path == "/silence")
                if query.get("b64"):
                    encoded = base64.b64encode(audio).decode()
                    return self._send(200, json.dumps({"audio": encoded}).encode(), "application/json")
                return self._send(200, audio, "audio/wav")

        return Handler
