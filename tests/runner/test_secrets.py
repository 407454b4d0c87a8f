"""Hosts behind an authenticating proxy: their credentials reach the host and nothing we write."""

from __future__ import annotations

import base64
import io
import json

import pytest
from comfyui_sonic.runner.display import JsonLinesSink, QuietSink, RichProgressDisplay
from comfyui_sonic.runner.jobs import JobRecord
from comfyui_sonic.runner.report import build_report, render_table
from comfyui_sonic.runner.secrets import HostSpec, HostSpecError, parse_hosts, redact, redact_obj, safe_url
from rich.console import Console

TOKEN = "tok-9f8e7d6c5b4a"
USERPASS = "render:hunter2-pass"
API_KEY = "key-0a1b2c3d4e"


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("GPU1_TOKEN", TOKEN)
    monkeypatch.setenv("GPU2_USERPASS", USERPASS)
    monkeypatch.setenv("GPU3_KEY", API_KEY)


def test_host_arguments_give_url_name_and_capabilities():
    (host,) = parse_hosts(["http://10.0.0.5:8188/ name=gpu1 max_resolution=1024 vram_gb=80"])
    assert host.url == "http://10.0.0.5:8188" and host.name == "gpu1"
    assert host.max_resolution == 1024 and host.vram_gb == 80.0 and host.headers == {}
    (plain,) = parse_hosts(["http://127.0.0.1:8188"])
    assert plain.name == "127.0.0.1:8188" and plain.max_resolution is None


def test_a_hosts_file_of_lines_with_bearer_basic_and_env_headers(tmp_path):
    hosts_file = tmp_path / "hosts.txt"
    hosts_file.write_text(
        "# fleet\n"
        "https://gpu1.example.com name=gpu1 token_env=GPU1_TOKEN\n"
        "\n"
        "https://gpu2.example.com name=gpu2 basic_env=GPU2_USERPASS max_resolution=768\n"
        "https://gpu3.example.com name=gpu3 header.X-Api-Key=env:GPU3_KEY 'header.X-Team=render farm'\n"
    )
    gpu1, gpu2, gpu3 = parse_hosts([], hosts_file)
    assert gpu1.headers == {"Authorization": f"Bearer {TOKEN}"}
    assert gpu2.headers == {"Authorization": "Basic " + base64.b64encode(USERPASS.encode()).decode()}
    assert gpu2.max_resolution == 768
    assert gpu3.headers == {"X-Api-Key": API_KEY, "X-Team": "render farm"}


def test_a_json_hosts_file(tmp_path):
    hosts_file = tmp_path / "hosts.json"
    hosts_file.write_text(
        json.dumps(
            [
                {"url": "https://gpu1.example.com", "name": "gpu1", "token_env": "GPU1_TOKEN", "vram_gb": 24},
                "https://gpu2.example.com name=gpu2",
            ]
        )
    )
    gpu1, gpu2 = parse_hosts(["http://127.0.0.1:8188 name=local"], hosts_file)[1:]
    assert gpu1.headers["Authorization"] == f"Bearer {TOKEN}" and gpu1.vram_gb == 24.0
    assert gpu2.name == "gpu2"


def test_user_and_password_in_a_url_become_basic_auth_and_leave_the_written_url():
    (host,) = parse_hosts(["https://render:url-pass-77@gpu4.example.com:8443 name=gpu4"])
    assert host.headers["Authorization"] == "Basic " + base64.b64encode(b"render:url-pass-77").decode()
    assert host.safe_url == "https://gpu4.example.com:8443"
    assert host.base_url == "https://gpu4.example.com:8443"
    assert "url-pass-77" not in repr(host) and "url-pass-77" not in redact(f"GET {host.url}/prompt failed")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ftp://gpu1 name=x", "not an http(s) URL"),
        ("http://gpu1 token_env=NOT_SET_ANYWHERE", "NOT_SET_ANYWHERE is not set"),
        ("http://gpu1 colour=blue", "unknown key(s) colour"),
        ("http://gpu1 max_resolution=big", "max_resolution='big' is not a number"),
        ("http://gpu1 loose-word", "is not key=value"),
    ],
)
def test_bad_host_specs_are_one_line_errors(line, message):
    with pytest.raises(HostSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_hosts([line])


def test_two_hosts_with_one_name_are_refused():
    with pytest.raises(HostSpecError, match="'gpu' is used twice"):
        parse_hosts(["http://a:1 name=gpu", "http://b:1 name=gpu"])


def test_redact_masks_registered_secrets_userinfo_auth_headers_and_credential_queries():
    parse_hosts(["https://gpu1.example.com name=gpu1 token_env=GPU1_TOKEN"])
    assert redact(f"401 from proxy for token {TOKEN}") == "401 from proxy for token ***"
    assert redact("GET https://bob:pw123@host/x") == "GET https://***@host/x"
    assert redact("headers={'Authorization': 'Bearer abc.def'}") == "headers={'Authorization': 'Bearer ***'}"
    assert redact("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic ***"
    assert (
        redact("GET /view?filename=a.mp4&api_key=zzz&type=output")
        == "GET /view?filename=a.mp4&api_key=***&type=output"
    )
    assert redact("nothing secret here: 512px, 25 steps") == "nothing secret here: 512px, 25 steps"
    assert redact_obj({"error": [f"x {TOKEN}"], "n": 3}) == {"error": ["x ***"], "n": 3}
    assert safe_url("https://u:p@h:1/base?token=abc&x=1") == "https://h:1/base?token=***&x=1"


def test_a_host_spec_never_prints_its_headers():
    host = HostSpec(url="https://gpu1.example.com", headers={"Authorization": "Bearer literal-secret"})
    assert "literal-secret" not in repr(host) and "literal-secret" not in str(host)


def test_secrets_do_not_leak_into_reports_or_event_streams(tmp_path):
    """Errors that quote the host URL and headers go through every writer; no credential comes out."""
    hosts_file = tmp_path / "hosts.txt"
    hosts_file.write_text(
        "https://gpu1.example.com name=gpu1 token_env=GPU1_TOKEN\n"
        "https://gpu2.example.com name=gpu2 basic_env=GPU2_USERPASS\n"
        "https://render:url-pass-77@gpu4.example.com name=gpu4 header.X-Api-Key=env:GPU3_KEY\n"
    )
    gpu1, gpu2, gpu4 = parse_hosts([], hosts_file)
    leaky_errors = {
        "gpu1": f"HTTPError 502 for {gpu1.url}/prompt with headers {gpu1.headers}",
        "gpu2": f"proxy refused {gpu2.headers['Authorization']} ({USERPASS})",
        "gpu4": f"ConnectionError: {gpu4.url}/ws?clientId=abc&token={API_KEY} unreachable",
    }
    events = []
    for i, (host, error) in enumerate(leaky_errors.items()):
        events.append({"event": "host", "host": host, "healthy": False, "error": error})
        events.append(
            {
                "event": "job",
                "job_id": f"j{i}",
                "row": i + 1,
                "state": "dead",
                "host": host,
                "attempt": 3,
                "error": error,
                "error_kind": "connection",
                "outputs": [],
                "ts": 0.0,
            }
        )
    jobs = [
        JobRecord(job_id=f"j{i}", row=i + 1, state="dead", host=h, attempts=3, error=e, notes=[e])
        for i, (h, e) in enumerate(leaky_errors.items())
    ]

    written = []
    stream = io.StringIO()
    sink = JsonLinesSink(stream)
    quiet_out, quiet_err = io.StringIO(), io.StringIO()
    quiet = QuietSink(out=quiet_out, err=quiet_err)
    live_out = io.StringIO()
    live = RichProgressDisplay(console=Console(file=live_out, force_terminal=True, width=300))
    plain_out = io.StringIO()
    plain = RichProgressDisplay(console=Console(file=plain_out, width=300), plain_interval=0)
    for event in events:
        for each in (sink, quiet, live, plain):
            each(event)
    for each in (sink, quiet, live, plain):
        each.close()
    report = build_report(jobs, started_at=0.0, finished_at=1.0)
    written += [stream.getvalue(), quiet_out.getvalue(), quiet_err.getvalue(), live_out.getvalue()]
    written += [plain_out.getvalue(), json.dumps(report), render_table(report, width=300)]

    userpass_b64 = base64.b64encode(USERPASS.encode()).decode()
    for text in written:
        for secret in (TOKEN, USERPASS, "hunter2-pass", userpass_b64, API_KEY, "url-pass-77"):
            assert secret not in text
    # the writers still say what went wrong and where
    assert "https://***@gpu4.example.com/ws?clientId=abc&token=***" in stream.getvalue()
    assert "HTTPError 502 for https://gpu1.example.com/prompt" in json.dumps(report)
