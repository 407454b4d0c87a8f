"""The http backend against a fake TTS service on loopback: request shapes, auth, retries, bad answers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.errors import SonicInputError, SonicServiceError
from comfyui_sonic.nodes.engine.tts import HttpBackend, HttpOptions, SpeechRequest, synthesize
from comfyui_sonic.nodes.engine.tts.cache import SpeechCache

from .fake_tts import RATE, TOKEN, FakeTTS


@pytest.fixture
def tts():
    with FakeTTS(fail_first=2, slow_s=2.0) as server:
        yield server


def speak(backend: HttpBackend, text: str = "Hello there. Nice to meet you!", voice: str = "nova", **kw):
    return synthesize(SpeechRequest(text, voice, **kw), backend, cache=SpeechCache(0))


def fast(**options) -> HttpOptions:
    return HttpOptions(**{"backoff": 0.01, "timeout": 5.0, **options})


def test_openai_shape_sends_model_input_voice_speed_and_gets_one_clip_per_sentence(tts):
    speech = speak(HttpBackend(tts.url("/v1/audio/speech"), "openai", fast(model="tts-1-hd")), speed=1.25)
    bodies = [r["body"] for r in tts.requests]
    assert [b["input"] for b in bodies] == ["Hello there.", "Nice to meet you!"]  # in order
    assert bodies[0] == {
        "model": "tts-1-hd",
        "input": "Hello there.",
        "voice": "nova",
        "speed": 1.25,
        "response_format": "wav",
    }
    assert speech.sentences == 2 and speech.audio.sample_rate == RATE
    expected = 0.06 * (len("Hello there.") + len("Nice to meet you!")) / 1.25
    assert speech.audio.duration == pytest.approx(expected, abs=0.05)  # joined, minus the crossfade


def test_generic_json_shape_uses_the_configured_field_names_and_extra_fields(tts):
    options = fast(text_field="content", voice_field="speaker", speed_field=None, extra={"format": "wav"})
    speak(HttpBackend(tts.url("/tts"), "json", options), text="Hi.", voice="narrator")
    assert tts.requests[0]["body"] == {"content": "Hi.", "speaker": "narrator", "format": "wav"}


def test_generic_json_answer_with_base64_audio_under_response_field(tts):
    options = fast(text_field="content", voice_field="speaker", response_field="audio")
    speech = speak(HttpBackend(tts.url("/tts?b64=1"), "json", options), text="Hi there.", voice="narrator")
    assert speech.audio.duration > 0.3


def test_emotion_and_intensity_pass_through_only_when_an_emotion_is_given(tts):
    backend = HttpBackend(tts.url("/v1/audio/speech"), "openai", fast())
    speak(backend, text="Hi.", emotion="happy", emotion_intensity=0.8)
    speak(backend, text="Hello.")
    first, second = (r["body"] for r in tts.requests)
    assert first["emotion"] == "happy" and first["emotion_intensity"] == 0.8
    assert "emotion" not in second and "emotion_intensity" not in second
    generic = HttpBackend(
        tts.url("/tts"), "json", fast(text_field="content", voice_field="speaker", emotion_field="emo")
    )
    speak(generic, text="Hey.", voice="narrator", emotion="sad", emotion_intensity=0.3)
    assert tts.requests[-1]["body"]["emo"] == "sad" and tts.requests[-1]["body"]["emotion_intensity"] == 0.3


def test_bearer_token_and_headers_come_from_the_environment(tts, monkeypatch):
    monkeypatch.setenv("MY_TTS_TOKEN", TOKEN)
    monkeypatch.setenv("MY_TTS_KEY", "k-42")
    options = fast(auth_env="MY_TTS_TOKEN", headers={"X-Api-Key": "env:MY_TTS_KEY", "X-Team": "video"})
    backend = HttpBackend(tts.url("/auth"), "openai", options)
    speak(backend, text="Secret hello.")
    assert tts.requests[0]["authorization"] == f"Bearer {TOKEN}"
    assert backend.headers()["X-Api-Key"] == "k-42" and backend.headers()["X-Team"] == "video"
    assert "k-42" not in str(backend.identity())  # secrets never reach the cache key


def test_refused_credentials_say_which_variable_to_set(tts, monkeypatch):
    monkeypatch.delenv("SONIC_TTS_API_KEY", raising=False)
    with pytest.raises(SonicServiceError, match=r"HTTP 401.*credentials.*SONIC_TTS_API_KEY"):
        speak(HttpBackend(tts.url("/auth"), "openai", fast()))


def test_a_header_from_an_unset_variable_is_one_line_naming_it(tts, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    backend = HttpBackend(
        tts.url("/v1/audio/speech"), "openai", fast(headers={"X-Key": "env:NOT_SET_ANYWHERE"})
    )
    with pytest.raises(SonicServiceError, match="environment variable NOT_SET_ANYWHERE is not set"):
        speak(backend)


def test_5xx_then_success_is_retried_with_backoff(tts):
    speech = speak(HttpBackend(tts.url("/flaky"), "openai", fast(retries=3)), text="Worth the wait.")
    assert tts.calls["/flaky"] == 3 and speech.audio.duration > 0.5


def test_a_service_that_stays_down_fails_after_its_retries_in_one_line(tts):
    backend = HttpBackend(tts.url("/down"), "openai", fast(retries=2))
    with pytest.raises(SonicServiceError) as err:
        speak(backend, text="Anyone there?")
    assert tts.calls["/down"] == 3
    message = str(err.value)
    assert "HTTP 502" in message and "after 3 tries" in message and "\n" not in message


def test_a_dead_service_is_one_line_that_says_to_check_it_is_running():
    backend = HttpBackend("http://127.0.0.1:9/v1/audio/speech", "openai", fast(retries=1))
    with pytest.raises(SonicServiceError, match=r"cannot connect .* after 2 tries; check that it is running"):
        speak(backend)


def test_a_slow_service_times_out_and_is_retried(tts):
    backend = HttpBackend(tts.url("/slow"), "openai", fast(timeout=0.3, retries=1))
    started = time.monotonic()
    with pytest.raises(SonicServiceError, match=r"no answer within 0.3 s after 2 tries"):
        speak(backend, text="Slowly.")
    assert time.monotonic() - started < 1.9  # never waited for the 2 s answer
    tts.slow_s = 0.2
    assert speak(HttpBackend(tts.url("/slow"), "openai", fast(timeout=5)), text="Slowly.").audio.duration > 0


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/html", "answered an HTML page, not audio: 502 Bad Gateway nginx"),
        ("/silence", r"answered \d+\.\d+ s of silence"),
        ("/empty", "answered 0 bytes"),
        ("/json", "answered JSON, not audio.*task_id.*response_field"),
    ],
)
def test_an_answer_that_is_not_speech_is_refused_in_one_line(tts, path, message):
    with pytest.raises(SonicServiceError, match=message) as err:
        speak(HttpBackend(tts.url(path), "openai", fast()))
    assert "\n" not in str(err.value)


def test_a_voice_the_service_refuses_is_a_voice_error(tts):
    with pytest.raises(SonicInputError, match=r"^voice: the tts service refused voice 'bob'"):
        speak(HttpBackend(tts.url("/v1/audio/speech"), "openai", fast()), voice="bob")


def test_with_a_voices_url_an_unknown_voice_lists_those_that_exist_before_any_synthesis(tts):
    backend = HttpBackend(tts.url("/v1/audio/speech"), "openai", fast(voices_url=tts.url("/voices")))
    with pytest.raises(SonicInputError, match=r"no voice 'bob'; use one of: alloy, nova, narrator"):
        speak(backend, voice="bob")
    assert tts.requests == []


def test_concurrent_sentences_come_back_in_order(tts):
    text = " ".join(f"Sentence number {'x' * i}." for i in range(1, 9))
    backend = HttpBackend(tts.url("/v1/audio/speech"), "openai", fast())
    one = speak(backend, text=text)
    four = synthesize(SpeechRequest(text, "nova"), backend, concurrency=4, cache=SpeechCache(0))
    assert np.array_equal(one.audio.samples, four.audio.samples)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('{"timeout": 30', "not valid JSON"),
        ('["timeout"]', "expected a JSON object"),
        ('{"timout": 30}', "unknown option 'timout'; use any of: model, text_field"),
        ('{"retries": 99}', "retries = 99"),
        ('{"timeout": -1}', "timeout = -1"),
    ],
)
def test_bad_http_options_are_named(options, message):
    with pytest.raises(SonicInputError, match=f"^http_options: .*{message}"):
        HttpOptions.parse(options)


@pytest.mark.parametrize(
    ("url", "fmt", "name"),
    [("", "openai", "url"), ("ftp://x", "openai", "url"), ("http://x", "xml", "request_format")],
)
def test_a_bad_url_or_format_is_named(url, fmt, name):
    with pytest.raises(SonicInputError, match=f"^{name}: "):
        HttpBackend(url, fmt)
