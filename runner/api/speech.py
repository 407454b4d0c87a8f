"""Text jobs over the API: ``POST /v1/jobs`` with ``text`` (and ``voice``) instead of an ``audio`` file.

Kept apart from the audio path so each stays short: a text request picks the text twin of the
template it names (sonic_lite_balanced -> sonic_lite_text_balanced), its text is checked here
(present, within the character limit, not both text and audio), and no duration is stored:
the clip lasts as long as the speech the worker's SONIC_TextToSpeech node synthesises.
"""

from __future__ import annotations

import os

from . import validation as v
from .settings import ServeSettings

DEFAULT_MAX_TEXT_CHARS = 20_000  # the node's own limit (SONIC_TTS_MAX_CHARS) unless set lower here


def max_text_chars() -> int:
    try:
        return int(os.environ.get("SONIC_TTS_MAX_CHARS", "") or DEFAULT_MAX_TEXT_CHARS)
    except ValueError:
        return DEFAULT_MAX_TEXT_CHARS


def speech_source(form_has_audio: bool, fields: dict[str, str]) -> str | None:
    """The request's text, or None for an audio request; 422 when both or neither are given."""
    text = fields.get("text")
    if text is None:
        if not form_has_audio:
            raise v.invalid(
                "audio",
                "audio: send the speech as multipart file field 'audio', or the words to speak as field 'text'",
                "missing",
            )
        return None
    if form_has_audio:
        raise v.invalid("text", "send either an audio file or a text, not both")
    if not text.strip():
        raise v.invalid("text", "text is empty; send the words the portrait should say", "text_empty")
    limit = max_text_chars()
    if len(text) > limit:
        raise v.invalid(
            "text",
            f"text is {len(text):,} characters; at most {limit:,} are accepted, split it into several jobs",
            "text_too_long",
        )
    return text


def text_template(name: str, settings: ServeSettings) -> str:
    """The text twin of a template (sonic_lite_balanced -> sonic_lite_text_balanced); 422 if there is none."""
    if "_text_" in name:
        return name
    stem, _, tier = name.rpartition("_")
    twin = f"{stem}_text_{tier}"
    if twin not in v.template_names(settings):
        raise v.invalid(
            "template",
            f"template {name!r} has no text version ({twin!r}); send audio, or pick a *_text_* template",
        )
    return twin
