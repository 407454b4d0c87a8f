"""SONIC_TextToSpeech as a graph uses it: text in, core AUDIO out, one-line errors for bad input."""

from __future__ import annotations

import math

import pytest
import torch
from comfyui_sonic.nodes.engine.errors import SonicInputError, SonicServiceError
from comfyui_sonic.nodes.engine.tts import default_cache
from comfyui_sonic.nodes.text_to_speech import SONIC_TextToSpeech

from tests.engine.tts.fake_tts import FakeTTS


@pytest.fixture
def node(espeak):
    return SONIC_TextToSpeech()


def test_espeak_output_is_core_audio_that_sonic_predata_accepts(node, face_image):
    from comfyui_sonic.nodes.pre_data import SONIC_PreData

    out = node.speak("Hello! I was typed, and now I am spoken.", "espeak-ng", "en-us", 1.0)
    (audio,) = out["result"]
    assert set(audio) == {"waveform", "sample_rate"} and isinstance(audio["sample_rate"], int)
    waveform = audio["waveform"]
    assert waveform.dtype == torch.float32 and waveform.ndim == 3 and waveform.shape[:2] == (1, 1)
    seconds = waveform.shape[-1] / audio["sample_rate"]
    assert "s of speech from 2 sentence(s) with espeak-ng voice en-us" in out["ui"]["text"][-1]
    image = torch.from_numpy(face_image).float().div(255).unsqueeze(0)
    data = SONIC_PreData().prepare(image, audio, min_resolution=256)["result"][0]
    assert data.duration == pytest.approx(seconds, abs=1e-3)  # the clip follows the speech


def test_the_same_text_again_comes_from_the_cache(node):
    text = "A greeting that a service says a thousand times a day."
    node.speak(text, "espeak-ng", "en-gb", 1.0)
    hits = default_cache().hits
    again = node.speak(text, "espeak-ng", "en-gb", 1.0)
    assert default_cache().hits == hits + 1 and "1 from the cache" in again["ui"]["text"][-1]


def test_cleaned_text_is_noted_on_the_node(node):
    out = node.speak("<p>Hello\x00 there.</p>", "espeak-ng", "en-us", 1.0)
    assert out["ui"]["text"][:2] == [
        "markup tags were removed from the text (only the words are spoken)",
        "1 control character(s) were removed from the text",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": ""}, "text: the text is empty"),
        ({"text": "x" * 100_000}, "text: the text is too long (100,000 characters; the limit is 20,000)"),
        ({"voice": "xx-nowhere"}, "voice: espeak-ng has no voice 'xx-nowhere'; use one of: af,"),
        ({"text": "Привет, мир."}, "text: the text has 9 letter(s) in Cyrillic script"),
        ({"speed": math.nan}, "speed: nan is not a finite number; give a value from 0.25 to 4"),
        ({"speed": 9.0}, "speed: 9.0 is above the maximum of 4"),
        ({"concurrency": 0}, "concurrency: 0 is below the minimum of 1"),
        ({"backend": "festival"}, "backend: 'festival' is unknown; use one of: espeak-ng, http"),
        ({"backend": "http", "url": ""}, "url: empty; give the TTS service's URL"),
        ({"backend": "http", "url": "http://x", "http_options": "{oops"}, "http_options: not valid JSON"),
    ],
)
def test_bad_input_is_one_line_naming_the_input(node, kwargs, message):
    args = {"text": "Hello.", "backend": "espeak-ng", "voice": "en-us", "speed": 1.0, **kwargs}
    with pytest.raises(SonicInputError) as err:
        node.speak(**args)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_http_backend_through_the_node_with_emotion():
    with FakeTTS() as tts:
        out = SONIC_TextToSpeech().speak(
            "Happy to see you. Truly.",
            "http",
            "nova",
            1.0,
            url=tts.url("/v1/audio/speech"),
            http_options='{"backoff": 0.01}',
            emotion="happy",
            emotion_intensity=0.7,
            concurrency=2,
        )
        assert [r["body"]["emotion"] for r in tts.requests] == ["happy", "happy"]
    assert out["result"][0]["sample_rate"] == 24_000


def test_an_http_service_answering_html_is_a_service_error():
    with FakeTTS() as tts, pytest.raises(SonicServiceError, match="answered an HTML page, not audio"):
        SONIC_TextToSpeech().speak("Hi.", "http", "nova", 1.0, url=tts.url("/html"))


def test_the_voice_tooltip_lists_the_installed_voices(espeak):
    tooltip = SONIC_TextToSpeech.INPUT_TYPES()["required"]["voice"][1]["tooltip"]
    assert "espeak-ng voices here: af, am," in tooltip and "en-us" in tooltip
