"""The espeak-ng backend with the real program: voices from the installed program, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.errors import SonicInputError, SonicModelError
from comfyui_sonic.nodes.engine.tts import SpeechRequest, synthesize
from comfyui_sonic.nodes.engine.tts import espeak as espeak_module
from comfyui_sonic.nodes.engine.tts.cache import SpeechCache


def say(backend, text: str, voice: str = "en-us", **kw):
    return synthesize(SpeechRequest(text, voice, **kw), backend, cache=SpeechCache(0))


def test_voices_are_listed_from_the_installed_program(espeak):
    names = espeak_module.voice_names()
    assert {"en-us", "de", "ru", "cmn"} <= set(names) and len(names) > 50
    assert "f3" in espeak_module.variants()


def test_a_sentence_becomes_mono_speech_as_long_as_it_takes_to_say(espeak):
    speech = say(espeak, "Hello! This portrait speaks a typed sentence.")
    audio = speech.audio
    assert audio.samples.shape[0] == 1 and audio.samples.dtype == np.float32
    assert audio.sample_rate == 22050 and 1.5 < audio.duration < 5.0
    assert np.abs(audio.samples).max() > 0.1  # loud enough to drive a mouth


def test_speed_changes_the_length(espeak):
    slow, quick = (say(espeak, "One two three four five six.", speed=s).audio.duration for s in (0.7, 1.6))
    assert quick < 0.7 * slow


@pytest.mark.parametrize("voice", ["de", "German", "gmw/de", "de+f3"])
def test_a_voice_may_be_a_language_code_a_name_a_file_or_have_a_variant(espeak, voice):
    assert say(espeak, "Guten Tag.", voice).audio.duration > 0.3


def test_a_voice_that_does_not_exist_lists_those_that_do(espeak):
    with pytest.raises(SonicInputError) as err:
        say(espeak, "Hello.", "elvish")
    message = str(err.value)
    assert message.startswith("voice: espeak-ng has no voice 'elvish'; use one of: af, am,")
    assert "en-us" in message and "\n" not in message


def test_an_unknown_variant_lists_the_variants(espeak):
    with pytest.raises(SonicInputError, match=r"no voice variant 'robotz'; use one of: .*f3"):
        say(espeak, "Hello.", "en-us+robotz")


@pytest.mark.parametrize(
    ("text", "voice", "script"),
    [("Привет, как дела?", "en-us", "Cyrillic"), ("你好世界", "de", "Han"), ("Γειά σου", "ru", "Greek")],
)
def test_text_in_a_script_the_voice_cannot_read_is_refused_with_voices_that_can(espeak, text, voice, script):
    with pytest.raises(SonicInputError, match=f"^text: .* in {script} script, which voice '{voice}'") as err:
        say(espeak, text, voice)
    assert "choose a voice for it, e.g." in str(err.value)


def test_text_in_the_voices_own_script_and_latin_words_are_spoken(espeak):
    assert say(espeak, "Привет! Это Sonic.", "ru").audio.duration > 0.5
    assert say(espeak, "你好，世界。", "cmn").audio.duration > 0.5


def test_a_text_that_starts_like_an_option_is_spoken_not_parsed(espeak):
    assert say(espeak, "--help me, please.").audio.duration > 0.5


def test_a_missing_program_names_the_package_to_install(monkeypatch):
    monkeypatch.setenv("SONIC_ESPEAK", "espeak-ng-not-installed-here")
    with pytest.raises(SonicModelError) as err:
        espeak_module.program()
    message = str(err.value)
    assert message.startswith(
        "espeak-ng is not installed on this machine; install Debian's espeak-ng package"
    )
    assert "apt-get install espeak-ng" in message and "\n" not in message
