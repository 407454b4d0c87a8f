"""`sonic-runner hosts`: one report per ComfyUI host, from its own routes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from comfyui_sonic.runner.hosts import REQUIRED_NODES, check_host, check_hosts, model_files_from_object_info

try:
    from tests.fake_comfy import FakeComfy
except ImportError:  # the repo root is not on sys.path: tests/ is a package, use its sibling
    from ..fake_comfy import FakeComfy

pytestmark = pytest.mark.timeout(60)


def FakeHost(**options) -> FakeComfy:
    """The fake with its fixed stand-in node schemas, so protocol tests do not move with the nodes."""
    return FakeComfy(pack_nodes=False, **options)


def test_a_healthy_host_reports_version_nodes_weights_and_vram():
    with FakeHost(
        comfyui_version="0.3.64",
        vram_total_gb=24,
        vram_free_gb=18.5,
        model_files=["unet.pth", "svd_xt.safetensors"],
    ) as server:
        report = check_host(server.url)
    assert report.reachable and report.ok and report.error is None
    assert report.comfyui_version == "0.3.64"
    assert report.nodes_present == dict.fromkeys(REQUIRED_NODES, True)
    assert report.model_files == ["unet.pth", "svd_xt.safetensors"]
    assert (report.vram_total_gb, report.vram_free_gb) == (24.0, 18.5)
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def test_a_host_without_our_nodes_is_reachable_but_not_ok():
    core_only = {"LoadImage": {"input": {"required": {"image": [["a.png"], {}]}}}}
    with FakeHost(object_info=core_only) as server:
        report = check_host(server.url)
    assert report.reachable and not report.ok
    assert report.missing_nodes == list(REQUIRED_NODES)
    assert report.model_files == []


def test_an_unreachable_host_says_why_in_one_line():
    report = check_host("http://admin:pw@127.0.0.1:9", timeout=1)
    assert not report.reachable and not report.ok
    assert report.url == "http://127.0.0.1:9"
    assert "cannot connect" in report.error and "pw" not in report.error and "\n" not in report.error


def test_headers_from_a_host_spec_are_sent():
    @dataclass
    class Spec:  # the shape of secrets.HostSpec that check_host relies on
        url: str
        headers: dict = field(default_factory=dict)

    with FakeHost(token="tok") as server:
        refused = check_host(server.url)
        accepted = check_host(Spec(server.url, {"Authorization": "Bearer tok"}))
    assert not refused.reachable and "401" in refused.error
    assert accepted.ok


def test_object_info_failure_keeps_what_system_stats_said():
    with FakeHost() as server:
        server.set_faults(http_500={"/object_info": 1})
        report = check_host(server.url)
    assert report.reachable and not report.ok
    assert report.comfyui_version and report.error.startswith("object_info:")


def test_check_hosts_keeps_order():
    with FakeHost() as a, FakeHost(vram_total_gb=80) as b:
        reports = check_hosts([b.url, "http://127.0.0.1:9", a.url], timeout=1)
    assert [r.reachable for r in reports] == [True, False, True]
    assert reports[0].vram_total_gb == 80


def test_model_files_from_both_combo_forms():
    info = {
        "SONIC_ModelLoader": {
            "input": {
                "required": {
                    "backend": [["lite", "sonic"], {}],
                    "unet": ["COMBO", {"options": ["sonic/unet.pth", "none"]}],
                    "svd": [["svd_xt_1_1.safetensors", "(diffusers folder svd in models/sonic)"], {}],
                    "steps": ["INT", {"default": 25}],
                },
                "optional": {"whisper": [["whisper-tiny/"], {}]},
            }
        }
    }
    assert model_files_from_object_info(info) == ["sonic/unet.pth", "svd_xt_1_1.safetensors", "whisper-tiny/"]
