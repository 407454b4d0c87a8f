"""Filling a saved API-format workflow from a batch row."""

from __future__ import annotations

import json

import pytest
from comfyui_sonic.runner.workflow import (
    WorkflowError,
    apply_params,
    find_inputs,
    get_param,
    load_workflow,
    resolution_of,
    set_resolution,
)


def sonic_template() -> dict:
    """The shape of workflows/api/*: portrait + speech -> Sonic -> lip-sync -> MP4."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "portrait.png"}, "_meta": {"title": "Portrait"}},
        "2": {"class_type": "LoadAudio", "inputs": {"audio": "speech.wav"}, "_meta": {"title": "Speech"}},
        "3": {
            "class_type": "SONIC_ModelLoader",
            "inputs": {"backend": "lite", "dtype": "fp16"},
            "_meta": {"title": "Sonic Model"},
        },
        "4": {
            "class_type": "SONIC_PreData",
            "inputs": {
                "image": ["1", 0],
                "audio": ["2", 0],
                "duration": 0.0,
                "min_resolution": 512,
                "expand_ratio": 0.5,
            },
            "_meta": {"title": "Prepare"},
        },
        "5": {
            "class_type": "SONIC_Inference",
            "inputs": {
                "model": ["3", 0],
                "data": ["4", 0],
                "seed": 1,
                "inference_steps": 25,
                "dynamic_scale": 1.0,
                "motion_scale": 1.0,
                "fps": 25.0,
            },
            "_meta": {"title": "Sonic"},
        },
        "6": {
            "class_type": "LipSyncCorrect",
            "inputs": {"images": ["5", 0], "audio": ["5", 1], "fps": ["5", 2], "mode": "auto"},
            "_meta": {"title": "Lip Sync"},
        },
        "7": {
            "class_type": "VideoEncode",
            "inputs": {
                "images": ["6", 0],
                "audio": ["6", 1],
                "fps": ["5", 2],
                "crf": 19,
                "filename_prefix": "sonic/clip",
                "faststart": True,
            },
            "_meta": {"title": "Save MP4"},
        },
    }


def test_a_batch_row_fills_image_audio_and_tier_parameters_by_alias():
    template = sonic_template()
    job = apply_params(
        template,
        {
            "image": "sonic/alice.png",
            "audio": "sonic/alice.wav",
            "seed": "42",
            "inference_steps": "30",
            "crf": "23",
        },
    )
    assert job["1"]["inputs"]["image"] == "sonic/alice.png"
    assert job["2"]["inputs"]["audio"] == "sonic/alice.wav"
    assert job["5"]["inputs"]["seed"] == 42
    assert job["5"]["inputs"]["inference_steps"] == 30
    assert job["7"]["inputs"]["crf"] == 23
    # the template itself is untouched: every job starts from the same graph
    assert template["5"]["inputs"]["seed"] == 1


def test_csv_strings_become_the_type_the_template_holds():
    job = apply_params(
        sonic_template(),
        {
            "dynamic_scale": "1.1",
            "duration": "12",
            "Save MP4.faststart": "false",
            "Sonic Model.backend": "sonic",
        },
    )
    assert job["5"]["inputs"]["dynamic_scale"] == pytest.approx(1.1)
    assert isinstance(job["4"]["inputs"]["duration"], float) and job["4"]["inputs"]["duration"] == 12.0
    assert job["7"]["inputs"]["faststart"] is False
    assert job["3"]["inputs"]["backend"] == "sonic"
    assert apply_params(sonic_template(), {"seed": "7.0"})["5"]["inputs"]["seed"] == 7


def test_a_value_that_does_not_fit_the_type_names_the_parameter():
    with pytest.raises(WorkflowError, match=r"'seed'.*Sonic\.seed.*not a whole number"):
        apply_params(sonic_template(), {"seed": "abc"})
    with pytest.raises(WorkflowError, match=r"'seed'.*not a whole number"):
        apply_params(sonic_template(), {"seed": "1.5"})
    with pytest.raises(WorkflowError, match="not a boolean"):
        apply_params(sonic_template(), {"Save MP4.faststart": "maybe"})


def test_titles_are_matched_before_class_types_and_case_does_not_matter():
    prompt = sonic_template()
    assert find_inputs(prompt, "sonic.seed") == [("5", "seed")]
    assert find_inputs(prompt, "SONIC_Inference.seed") == [("5", "seed")]
    # a node titled like another node's class wins over the class
    prompt["3"]["_meta"]["title"] = "VideoEncode"
    assert find_inputs(prompt, "VideoEncode.backend") == [("3", "backend")]
    assert find_inputs(prompt, "VideoEncode.crf") == []


def test_titles_with_dots_split_at_the_last_dot():
    prompt = sonic_template()
    prompt["5"]["_meta"]["title"] = "Sonic v1.2"
    assert find_inputs(prompt, "Sonic v1.2.seed") == [("5", "seed")]


def test_an_alias_sets_values_and_leaves_links_alone():
    # fps is a value on Sonic and a link on Lip Sync / Save MP4: only the value changes
    job = apply_params(sonic_template(), {"fps": "30"})
    assert job["5"]["inputs"]["fps"] == 30.0
    assert job["6"]["inputs"]["fps"] == ["5", 2]
    assert job["7"]["inputs"]["fps"] == ["5", 2]


def test_a_link_is_never_overwritten_by_an_explicit_target():
    with pytest.raises(WorkflowError, match=r"'Lip Sync.fps'.*Lip Sync\.fps \(node 6\) is linked"):
        apply_params(sonic_template(), {"Lip Sync.fps": "30"})


def test_an_unknown_key_lists_the_inputs_that_exist():
    with pytest.raises(WorkflowError) as err:
        apply_params(sonic_template(), {"sead": "1"})
    message = str(err.value)
    assert "'sead'" in message and "Sonic.seed" in message and "Save MP4.crf" in message
    assert "\n" not in message
    with pytest.raises(WorkflowError, match="'Sonic.nope'"):
        apply_params(sonic_template(), {"Sonic.nope": 1})


def test_get_param_reads_a_value_back():
    prompt = sonic_template()
    assert get_param(prompt, "duration") == 0.0
    assert get_param(prompt, "image") == "portrait.png"
    assert get_param(prompt, "Prepare.expand_ratio") == 0.5
    with pytest.raises(WorkflowError, match="linked"):
        get_param(prompt, "Save MP4.images")


def test_resolution_is_read_and_set_on_pre_data():
    prompt = sonic_template()
    assert resolution_of(prompt) == 512
    lowered = set_resolution(prompt, 384)
    assert resolution_of(lowered) == 384 and resolution_of(prompt) == 512
    del prompt["4"]
    assert resolution_of(prompt) is None
    with pytest.raises(WorkflowError, match="no SONIC_PreData"):
        set_resolution(prompt, 384)


def test_load_workflow_reads_the_api_format(tmp_path):
    path = tmp_path / "sonic_lite_api.json"
    path.write_text(json.dumps(sonic_template()))
    assert load_workflow(path) == sonic_template()


def test_load_workflow_accepts_a_saved_prompt_request(tmp_path):
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"prompt": sonic_template(), "client_id": "abc"}))
    assert load_workflow(path) == sonic_template()


def test_a_ui_format_file_says_how_to_get_the_api_format(tmp_path):
    path = tmp_path / "sonic_lite.json"
    path.write_text(json.dumps({"last_node_id": 7, "nodes": [{"id": 1, "type": "LoadImage"}], "links": []}))
    with pytest.raises(WorkflowError, match=r"UI \(drag-and-drop\) format.*_api\.json.*Save \(API\)"):
        load_workflow(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "file not found"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected an object of nodes"),
        ('{"1": {"inputs": {}}}', "node '1' has no class_type"),
    ],
)
def test_bad_workflow_files_give_one_line_errors(tmp_path, content, expected):
    path = tmp_path / "wf.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(WorkflowError, match=expected) as err:
        load_workflow(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_float_inputs_saved_as_json_integers_still_take_fractions():
    # ComfyUI's front end writes a FLOAT widget holding 25.0 as the JSON number 25
    prompt = sonic_template()
    prompt["5"]["inputs"].update({"fps": 25, "dynamic_scale": 1})
    prompt["8"] = {"class_type": "SomeoneElsesNode", "inputs": {"strength": 1}, "_meta": {"title": "Extra"}}
    job = apply_params(prompt, {"fps": "29.97", "dynamic_scale": "1.15", "Extra.strength": "0.5"})
    assert job["5"]["inputs"]["fps"] == pytest.approx(29.97)
    assert job["5"]["inputs"]["dynamic_scale"] == pytest.approx(1.15)
    assert job["8"]["inputs"]["strength"] == 0.5
    # our INT inputs stay strict: a fractional seed or step count is refused, not truncated
    with pytest.raises(WorkflowError, match="not a whole number"):
        apply_params(prompt, {"inference_steps": "25.5"})
    with pytest.raises(WorkflowError, match="not a number"):
        apply_params(prompt, {"motion_scale": "nan"})
