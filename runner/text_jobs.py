"""Text jobs: a row or request with the words to speak instead of a speech clip.

A text job runs a template whose speech comes from SONIC_TextToSpeech (sonic_*_text_*). The
runner has no clip to probe or upload: the host synthesises the speech, and SONIC_PreData's
duration is set to 0 ("the audio's length"), so the clip always lasts exactly as long as the
synthesised speech, whatever a manifest's duration column says (a differing value is noted).
"""

from __future__ import annotations

from typing import Any

from .workflow import WorkflowError, find_inputs, get_param

TTS_CLASS = "SONIC_TextToSpeech"
TEXT_TEMPLATE_HINT = "use a text template such as workflows/api/sonic_lite_text_balanced_api.json"


def is_text_template(template: dict) -> bool:
    """Whether the workflow speaks a text (has SONIC_TextToSpeech with a text input)."""
    return bool(find_inputs(template, f"{TTS_CLASS}.text"))


def check_source(template: dict, has_text: bool) -> None:
    """WorkflowError when a text job meets an audio template, or a clip meets a text template."""
    if has_text and not is_text_template(template):
        raise WorkflowError(
            f"this workflow has no {TTS_CLASS} node, so it cannot speak a text; {TEXT_TEMPLATE_HINT}"
        )
    if not has_text and not find_inputs(template, "LoadAudio.audio") and is_text_template(template):
        raise WorkflowError(
            "this workflow speaks a text (SONIC_TextToSpeech) and loads no audio; give text instead of audio, "
            "or use an audio template such as workflows/api/sonic_lite_balanced_api.json"
        )


def text_params(
    template: dict, params: dict[str, Any], text: str, notes: list[str] | None = None
) -> dict[str, Any]:
    """The job's parameters with the text set and the duration following the synthesised speech."""
    check_source(template, True)
    params = {**params, "text": text}
    try:
        get_param(template, "duration")
    except WorkflowError:
        return params  # a template without a duration input already follows its audio
    given = params.get("duration")
    if given not in (None, "") and str(given).strip() not in ("0", "0.0") and notes is not None:
        note = f"duration {given} ignored: a text job lasts as long as its synthesised speech"
        if note not in notes:
            notes.append(note)
    params["duration"] = 0.0
    return params
