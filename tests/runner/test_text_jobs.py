"""Text jobs: the words to speak instead of a clip, from `run --text`, a manifest's text column
or the attempt executor; the clip always lasts as long as the synthesised speech."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from comfyui_sonic.runner import jobs as J
from comfyui_sonic.runner.attempt import AttemptConfig, AttemptExecutor
from comfyui_sonic.runner.batch import build_jobs
from comfyui_sonic.runner.cli import main
from comfyui_sonic.runner.client import ComfyClient
from comfyui_sonic.runner.journal import Journal
from comfyui_sonic.runner.manifest import ManifestError, read_manifest
from comfyui_sonic.runner.workflow import load_workflow

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tests.fake_comfy import FakeComfy  # noqa: E402

TEXT_TEMPLATE = REPO / "workflows" / "api" / "sonic_lite_text_fast_api.json"
AUDIO_TEMPLATE = REPO / "workflows" / "api" / "sonic_lite_fast_api.json"
FACE = REPO / "demo" / "sonic_example_face.jpg"


def test_a_manifest_may_give_text_and_voice_instead_of_audio(tmp_path):
    (tmp_path / "face.jpg").write_bytes(FACE.read_bytes())
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(
        'id,image,text,voice,speed\nhello,face.jpg,"Hello, and welcome!",en-gb,1.1\nblank,face.jpg,,en-us,\n'
    )
    hello, blank = read_manifest(manifest)
    assert hello["error"] is None and hello["audio"] is None and hello["text"] == "Hello, and welcome!"
    assert hello["params"] == {"voice": "en-gb", "speed": "1.1"}
    assert (
        "column 'audio': empty; give the path of the speech clip (or the words to speak in 'text')"
        in (blank["error"])
    )


def test_a_row_with_both_audio_and_text_is_refused(tmp_path):
    (tmp_path / "face.jpg").write_bytes(FACE.read_bytes())
    (tmp_path / "s.wav").write_bytes(b"x")
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"image": "face.jpg", "audio": "s.wav", "text": "Hi."}) + "\n")
    (row,) = read_manifest(manifest)
    assert row["error"].endswith("both 'audio' and 'text' are set; give one (a clip, or the words to speak)")


def test_a_manifest_without_audio_or_text_says_text_is_possible(tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("image,words\nface.jpg,hi\n")
    with pytest.raises(ManifestError, match="a text job has a 'text' column instead of 'audio'"):
        read_manifest(manifest)


def test_text_rows_become_text_jobs_and_need_a_text_template():
    row = {"id": "a", "image": str(FACE), "text": "Hi there.", "params": {"voice": "en-us"}}
    (job,) = build_jobs([row], load_workflow(TEXT_TEMPLATE), {})
    assert job.state == J.QUEUED and job.spec["text"] == "Hi there." and "audio" not in job.spec
    (dead,) = build_jobs([row], load_workflow(AUDIO_TEMPLATE), {})
    assert dead.state == J.DEAD and "has no SONIC_TextToSpeech node, so it cannot speak a text" in dead.error
    clip = {"id": "b", "image": str(FACE), "audio": str(FACE)}
    (wrong,) = build_jobs([clip], load_workflow(TEXT_TEMPLATE), {})
    assert wrong.state == J.DEAD and "give text instead of audio" in wrong.error


def test_an_attempt_uploads_only_the_portrait_and_lets_the_speech_set_the_duration(tmp_path):
    with FakeComfy(run_seconds=0.02) as srv:
        template = load_workflow(TEXT_TEMPLATE)
        journal = Journal(":memory:")
        row = {
            "id": "t",
            "image": str(FACE),
            "text": "Hello there.",
            "params": {"voice": "de", "duration": "7"},
        }
        (job,) = build_jobs([row], template, {})
        journal.add_jobs([job])
        journal.transition(job, J.UPLOADING, host=srv.url)
        executor = AttemptExecutor(
            ComfyClient(srv.url),
            srv.url,
            template,
            journal,
            AttemptConfig(out_dir=tmp_path, poll_interval=0.1),
        )
        prompt = executor.prepare(job)
        speech = next(n for n in prompt.values() if n["class_type"] == "SONIC_TextToSpeech")
        assert speech["inputs"]["text"] == "Hello there." and speech["inputs"]["voice"] == "de"
        prepare = next(n for n in prompt.values() if n["class_type"] == "SONIC_PreData")
        assert prepare["inputs"]["duration"] == 0.0  # "from the audio": the synthesised speech
        assert job.notes == ["duration 7 ignored: a text job lasts as long as its synthesised speech"]
        assert [Path(u["name"]).suffix for u in srv.uploads] == [".jpg"]
        assert executor.run(job).done


def _mouth_and_loudness(mp4: Path) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per video frame: mouth opening (landmarks tracked in the frames) and the audio's RMS loudness."""
    import av
    from comfyui_sonic.nodes.engine.lipsync import mouth_opening, track_landmarks

    with av.open(str(mp4)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(mp4)) as container:
        rate = container.streams.audio[0].rate
        samples = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)])
    hop = rate / 25.0
    loudness = np.array(
        [np.sqrt(np.mean(samples[int(i * hop) : int((i + 1) * hop)] ** 2) or 0.0) for i in range(len(frames))]
    )
    return mouth_opening(track_landmarks(frames)), loudness, len(frames) / 25.0, samples.size / rate


def test_the_lite_text_template_renders_a_sentence_to_an_mp4_whose_mouth_moves_with_the_voice(
    tmp_path, espeak, capsys
):
    text = "Hello there! This portrait speaks a sentence that was typed, not recorded. Isn't that nice?"
    code = main(
        [
            "run",
            str(TEXT_TEMPLATE),
            "--image",
            str(FACE),
            "--text",
            text,
            "--voice",
            "en-gb",
            "-o",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    mp4 = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert mp4.suffix == ".mp4" and mp4.is_file()
    mouth, loudness, video_s, audio_s = _mouth_and_loudness(mp4)
    spoken = espeak.synthesize(text, "en-gb", 1.0).duration  # what the node said, less the crossfades
    assert video_s == pytest.approx(audio_s, abs=0.05) and video_s == pytest.approx(spoken, abs=0.3)
    assert np.corrcoef(mouth, loudness)[0, 1] > 0.6  # the mouth opens when the voice is loud
    assert mouth[loudness < 0.2 * loudness.max()].mean() < mouth[loudness > 0.5 * loudness.max()].mean()


def test_run_text_errors_are_one_line_usage_errors(tmp_path, capsys):
    out = ["--image", str(FACE), "-o", str(tmp_path)]
    assert main(["run", str(TEXT_TEMPLATE), *out, "--text", "   "]) == 2
    assert "--text: empty; give the words the portrait should say" in capsys.readouterr().err
    assert main(["run", str(AUDIO_TEMPLATE), *out, "--text", "Hi."]) == 2
    assert "has no SONIC_TextToSpeech node" in capsys.readouterr().err
    assert main(["run", str(AUDIO_TEMPLATE), *out, "--audio", str(FACE), "--voice", "de"]) == 2
    assert "--voice: goes with --text" in capsys.readouterr().err


def test_a_text_that_the_voice_cannot_read_fails_the_job_in_one_line(tmp_path, espeak, capsys):
    args = ["run", str(TEXT_TEMPLATE), "--image", str(FACE), "-o", str(tmp_path), "--quiet"]
    assert main([*args, "--text", "Привет, мир.", "--voice", "en-us"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("sonic-runner: job failed: text: the text has 9 letter(s) in Cyrillic script")
    assert "\n" not in err


def test_a_dead_tts_service_fails_the_embedded_job_in_one_line(tmp_path, capsys):
    args = ["run", str(TEXT_TEMPLATE), "--image", str(FACE), "-o", str(tmp_path), "--quiet", "--text", "Hi."]
    sets = [
        "Speech.backend=http",
        "Speech.url=http://127.0.0.1:9/v1/audio/speech",
        'Speech.http_options={"retries": 0}',
    ]
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "sonic-runner: job failed: tts service http://127.0.0.1:9/v1/audio/speech: cannot connect"
    )
    assert "\n" not in err


@pytest.mark.parametrize(
    ("name", "error", "retryable"),
    [
        ("SonicServiceError", "ExecutionHostError", True),  # a TTS service hiccup: retried with backoff
        ("SonicModelError", "HostConfigError", True),  # no espeak-ng on that host: another host
        ("SonicInputError", "JobInputError", False),  # empty text, unknown voice: never retried
    ],
)
def test_a_hosts_tts_errors_are_classified_for_the_retry_policy(name, error, retryable):
    from comfyui_sonic.runner.host_errors import classify_execution_error

    exc = classify_execution_error(
        {"exception_type": f"sonic.{name}", "exception_message": "x", "node_type": "SONIC_TextToSpeech"}
    )
    assert type(exc).__name__ == error and exc.retryable == retryable
