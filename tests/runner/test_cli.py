"""`sonic-runner` end to end against the fake ComfyUI: exit codes, faults, status/report, secrets, --help."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from comfyui_sonic.runner.cli import main

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the fake server lives in tests/fake_comfy, imported from the repo root
    sys.path.insert(0, str(REPO))
from tests.fake_comfy import FakeComfy  # noqa: E402
from tests.fake_comfy.jobs import template_for, write_job_files  # noqa: E402


@pytest.fixture(scope="module")
def host():
    with FakeComfy(run_seconds=0.03) as srv:
        yield srv


@pytest.fixture
def files(tmp_path, host):
    from PIL import Image

    write_job_files(tmp_path, host.url)
    Image.new("RGB", (64, 64), (20, 90, 200)).save(tmp_path / "noface.png")
    return tmp_path


def write_manifest(folder: Path, rows: list[str]) -> Path:
    path = folder / "batch.csv"
    path.write_text("id,image,audio,min_resolution\n" + "\n".join(rows) + "\n")
    return path


def events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_batch_with_every_retry_class_on_a_real_protocol(files, host, capsys):
    host.set_faults(http_500={"/prompt": 1}, drop_socket=1, oom_above=512)
    manifest = write_manifest(
        files,
        [
            "ok1,face.png,speech.wav,512",
            "oom,face.png,speech.wav,768",  # the host runs out of memory above 512: retried one tier lower
            "noface,noface.png,speech.wav,512",  # the host's SonicInputError: dead at once
            "ok2,face.png,speech.wav,384",
        ],
    )
    out = files / "out"
    code = main(
        [
            "batch",
            str(files / "sonic_api.json"),
            str(manifest),
            "--host",
            host.url,
            "--out",
            str(out),
            "--jsonl",
            "--poll-interval",
            "0.2",
            "--inflight",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # one job is dead
    finals = {
        e["job_id"]: e for e in events(captured.out) if e["event"] == "job" and e["state"] in ("done", "dead")
    }
    assert {k: v["state"] for k, v in finals.items()} == {
        "ok1": "done",
        "oom": "done",
        "noface": "dead",
        "ok2": "done",
    }
    assert finals["noface"]["error_kind"] == "input" and "SonicInputError" in finals["noface"]["error"]
    db = sqlite3.connect(out / "journal.sqlite")
    oom_attempts = db.execute(
        "SELECT resolution, error_kind FROM attempts WHERE job_id='oom' ORDER BY attempt"
    ).fetchall()
    assert oom_attempts[0] == (768, "oom") and oom_attempts[-1][0] == 512
    assert db.execute("SELECT attempts FROM jobs WHERE job_id='noface'").fetchone() == (1,)
    assert sorted(p.name for p in out.glob("*.mp4")) == ["ok1.mp4", "ok2.mp4", "oom.mp4"]
    assert "dead: noface" in captured.err

    assert main(["status", str(out / "journal.sqlite"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["states"] == {"done": 3, "dead": 1} and host.url in status["hosts"]
    assert main(["report", str(out / "journal.sqlite"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["attempts"]) >= 6  # 500 retry, OOM retry and the rest: every attempt accounted for
    assert main(["report", str(out / "journal.sqlite")]) == 0
    table = capsys.readouterr().out
    assert "noface" in table and "Attempts (" in table  # the attempt tables are in the text report too


def test_all_done_exits_zero_and_a_second_start_needs_resume(files, host, capsys):
    host.set_faults(http_500={}, drop_socket=0, oom_above=None)
    manifest = write_manifest(files, [f"c{i},face.png,speech.wav,512" for i in range(3)])
    args = [
        "batch",
        str(files / "sonic_api.json"),
        str(manifest),
        "--host",
        host.url,
        "--out",
        str(files / "o"),
        "--quiet",
        "--poll-interval",
        "0.2",
    ]
    assert main(args) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # nothing left to do; nothing submitted again
    assert len(list((files / "o").glob("*.mp4"))) == 3


def test_bad_arguments_are_one_line_errors(files, host, capsys):
    code = main(
        [
            "batch",
            str(files / "missing_api.json"),
            str(files / "x.csv"),
            "--host",
            host.url,
            "--out",
            str(files / "o"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "missing_api.json" in err
    assert main(["status", str(files / "nope.sqlite")]) == 2


def test_run_on_a_host_prints_the_mp4(files, host, capsys):
    code = main(
        [
            "run",
            str(files / "sonic_api.json"),
            "--image",
            str(files / "face.png"),
            "--audio",
            str(files / "speech.wav"),
            "--host",
            host.url,
            "-o",
            str(files / "single"),
            "--quiet",
            "--set",
            "seed=7",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and out[-1].endswith("face.mp4") and Path(out[-1]).stat().st_size > 0


def test_bearer_token_reaches_the_host_and_never_the_journal(files, tmp_path, capsys, monkeypatch):
    token = "tok-9f8e7d6c5b4a"
    monkeypatch.setenv("SONIC_TEST_TOKEN", token)
    with FakeComfy(run_seconds=0.01, token=token) as guarded:
        (files / "sonic_api.json").write_text(
            json.dumps(template_for(guarded.url, {"Authorization": f"Bearer {token}"}))
        )
        manifest = write_manifest(files, ["a,face.png,speech.wav,512"])
        code = main(
            [
                "batch",
                str(files / "sonic_api.json"),
                str(manifest),
                "--host",
                f"{guarded.url} token_env=SONIC_TEST_TOKEN",
                "--out",
                str(files / "sec"),
                "--jsonl",
                "--poll-interval",
                "0.2",
            ]
        )
        single = main(
            [
                "run",
                str(files / "sonic_api.json"),
                "--image",
                str(files / "face.png"),
                "--audio",
                str(files / "speech.wav"),
                "--host",
                guarded.url,
                "--header",
                f"Authorization=Bearer {token}",
                "-o",
                str(files / "sec"),
                "--quiet",
            ]
        )
    out = capsys.readouterr()
    assert code == 0 and single == 0
    for path in (files / "sec").iterdir():
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert token not in out.out + out.err


def test_help_is_fast_to_import_and_never_imports_torch():
    code = (
        "import sys, time; t=time.perf_counter(); from comfyui_sonic.runner import cli; "
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: cli.main(['--help'])\n"
        "    except SystemExit: pass\n"
        "print('torch' in sys.modules, 'requests' in sys.modules, 'av' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=60,
    )
    assert result.stdout.split() == ["False", "False", "False"], result.stderr


def test_run_without_a_host_uses_the_embedded_executor(files, monkeypatch, capsys):
    from comfyui_sonic.runner import embedded

    seen = {}

    def fake_run_embedded(prompt, out_dir, progress_sink=None, models_dir=None):
        seen["prompt"], seen["out"], seen["models"] = prompt, out_dir, models_dir
        path = Path(out_dir) / "clip.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"mp4")
        return [path]

    monkeypatch.setattr(embedded, "run_embedded", fake_run_embedded)
    code = main(
        [
            "run",
            str(files / "sonic_api.json"),
            "--image",
            str(files / "face.png"),
            "--audio",
            str(files / "speech.wav"),
            "-o",
            str(files / "local"),
            "--quiet",
            "--set",
            "Sonic.seed=9",
            "--models",
            str(files / "weights"),
        ]
    )
    assert code == 0 and capsys.readouterr().out.strip().endswith("clip.mp4")
    assert seen["models"] == files / "weights"
    by_class = {n["class_type"]: n["inputs"] for n in seen["prompt"].values()}
    assert by_class["LoadImage"]["image"] == str((files / "face.png").resolve())
    assert by_class["SONIC_PreData"]["duration"] == 0.5  # the audio's real length
    assert by_class["SONIC_Inference"]["seed"] == 9


def test_hosts_reports_each_host(host, capsys):
    assert main(["hosts", "--host", host.url, "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["url"] == host.url
    assert main(["hosts", "--host", "http://127.0.0.1:9"]) == 1
    assert "NO" in capsys.readouterr().out
    assert main(["hosts", "--host", f"{host.url} name=gpu1"]) == 0
    assert f"gpu1 ({host.url})" in capsys.readouterr().out


def test_webhook_gets_each_finished_job_signed(files, host, monkeypatch, capsys):
    from tests.runner.test_webhook_delivery import SECRET, Receiver

    receiver = Receiver()
    monkeypatch.setenv("SONIC_WEBHOOK_SECRET", SECRET)
    try:
        manifest = write_manifest(files, ["a,face.png,speech.wav,512", "b,noface.png,speech.wav,512"])
        code = main(
            [
                "batch",
                str(files / "sonic_api.json"),
                str(manifest),
                "--host",
                host.url,
                "--out",
                str(files / "hooked"),
                "--quiet",
                "--poll-interval",
                "0.2",
                "--webhook",
                receiver.url,
            ]
        )
    finally:
        receiver.close()
    assert code == 1
    assert receiver.bad_signatures == 0  # (checked with the standardwebhooks library)
    bodies = {d["payload"]["job_id"]: d["payload"] for d in receiver.seen}
    assert set(bodies) == {"a", "b"} and len(receiver.seen) == 2
    assert bodies["b"]["state"] == "dead" and bodies["b"]["type"] == "job.dead"
    assert (files / "hooked" / "journal.webhooks.sqlite").is_file()


def test_a_host_without_the_weights_is_excluded_and_named_in_status_and_report(files, host, capsys):
    """Two named hosts from a hosts file; gpu2 lacks the Sonic weights (SonicModelError with the module
    path real ComfyUI sends): its jobs move to gpu1 without using up their single attempt."""
    # gpu1 is slow enough that gpu2 surely gets jobs before gpu1 could have done them all
    host.set_faults(http_500={}, drop_socket=0, oom_above=None, slow=0.15)
    try:
        with FakeComfy(run_seconds=0.01, faults={"model_missing": True}) as bare:
            hosts_file = files / "hosts.txt"
            hosts_file.write_text(f"{host.url} name=gpu1\n{bare.url} name=gpu2\n")
            manifest = write_manifest(files, [f"c{i},face.png,speech.wav,512" for i in range(6)])
            out = files / "named"
            args = ["--hosts-file", str(hosts_file), "--out", str(out), "--jsonl", "--max-attempts", "1"]
            code = main(
                ["batch", str(files / "sonic_api.json"), str(manifest), *args, "--poll-interval", "0.2"]
            )
            captured = capsys.readouterr()
            assert code == 0, captured.err
            assert 1 <= len(bare.executions) <= 2 and len(list(out.glob("*.mp4"))) == 6
    finally:
        host.set_faults(slow=None)
    stream = events(captured.out)
    (excluded,) = [e for e in stream if e["event"] == "host" and e.get("excluded")]
    assert excluded["host"] == bare.url and excluded["host_name"] == "gpu2"
    assert "SonicModelError" in excluded["error"] and "unet.pth not found" in excluded["error"]
    assert {e["host_name"] for e in stream if e["event"] == "job" and e["state"] == "done"} == {"gpu1"}

    assert main(["status", str(out / "journal.sqlite")]) == 0
    status = capsys.readouterr().out
    assert f"gpu1 ({host.url}): attempts" in status
    gpu2 = next(line for line in status.splitlines() if f"gpu2 ({bare.url})" in line)
    assert "excluded (cannot run this workflow)" in gpu2 and "SonicModelError" in gpu2
    assert main(["report", str(out / "journal.sqlite")]) == 0
    table = capsys.readouterr().out
    assert "Attempts (" in table and "Attempts that did not end done" in table  # attempt tables in the text
    assert f"host gpu2 ({bare.url}) was excluded" in table and f"gpu1 ({host.url})" in table


# ---------------------------------------------------------------------- a host that cannot work
def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # (closed again when this returns: nothing listens there)


@pytest.fixture
def silent_host():
    """A port that accepts connections (the kernel's backlog) and never answers a request."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(
    "kind, why",
    [
        ("closed", "connection refused: nothing listens on that port"),
        ("unresolvable", "the host name does not resolve"),
        ("silent", "no answer within"),
    ],
)
def test_run_on_a_host_that_cannot_work_fails_within_its_timeout(files, silent_host, capsys, kind, why):
    import time

    url = {
        "closed": f"http://127.0.0.1:{closed_port()}",
        "unresolvable": "http://no-such-host.invalid:8188",
        "silent": silent_host,
    }[kind]
    argv = ["run", str(files / "sonic_api.json"), "--image", str(files / "face.png")]
    argv += ["--audio", str(files / "speech.wav"), "--host", url, "--timeout", "2", "--quiet"]
    argv += ["-o", str(files / "single")]
    started = time.monotonic()
    assert main(argv) == 3
    assert time.monotonic() - started < 15
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sonic-runner:")]
    assert err[0].startswith("sonic-runner: no host could work for ") and "not run" in err[0]
    assert len(err) == 2 and err[1].startswith(f"sonic-runner: host {url}: ")
    assert why in err[1] and "check that ComfyUI runs there" in err[1]


def test_a_batch_on_a_dead_fleet_exits_3_with_the_jobs_queued_and_a_line_per_host(files, capsys):
    manifest = write_manifest(files, [f"c{i},face.png,speech.wav,512" for i in range(3)])
    dead = [f"http://127.0.0.1:{closed_port()}", "http://no-such-host.invalid:8188"]
    out = files / "o"
    argv = ["batch", str(files / "sonic_api.json"), str(manifest), "--out", str(out), "--quiet"]
    argv += ["--give-up-after", "1", "--host", dead[0], "--host", dead[1]]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert f"3 unfinished job(s); they stay queued in {out / 'journal.sqlite'}, continue with --resume" in err
    host_lines = [line for line in err.splitlines() if line.startswith("sonic-runner: host ")]
    assert len(host_lines) == 2 and all(any(url in line for line in host_lines) for url in dead)
    with sqlite3.connect(out / "journal.sqlite") as db:
        assert db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall() == [("queued", 3)]


def test_batch_rejects_a_give_up_time_that_is_not_positive(files, capsys):
    manifest = write_manifest(files, ["c0,face.png,speech.wav,512"])
    with pytest.raises(SystemExit) as exit_:
        main(["batch", str(files / "sonic_api.json"), str(manifest), "--out", str(files / "o"), "--host",
              "http://x:1", "--give-up-after", "0"])  # fmt: skip
    assert exit_.value.code == 2 and "--give-up-after" in capsys.readouterr().err


def test_a_runner_bug_exits_70_naming_its_log_and_resume_finishes_the_jobs(files, host, capsys, monkeypatch):
    from comfyui_sonic.runner import client as client_module

    host.set_faults(http_500={}, drop_socket=0, oom_above=None)
    manifest = write_manifest(files, [f"c{i},face.png,speech.wav,512" for i in range(3)])
    out = files / "o"
    argv = ["batch", str(files / "sonic_api.json"), str(manifest), "--host", host.url, "--out", str(out)]
    argv += ["--quiet", "--poll-interval", "0.2", "--inflight", "1"]
    real = client_module.ComfyClient.output_files

    def broken(self, entry):
        raise KeyError("outputs")  # stands for any bug inside the runner

    monkeypatch.setattr(client_module.ComfyClient, "output_files", broken)
    assert main(argv) == 70
    log = out / "journal.runner-errors.log"
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("sonic-runner:")]
    assert f"traceback in {log}" in line and "--resume" in line and "KeyError" in log.read_text()
    with sqlite3.connect(out / "journal.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE state='dead'").fetchone() == (0,)
    monkeypatch.setattr(client_module.ComfyClient, "output_files", real)
    assert main([*argv, "--resume"]) == 0
    assert len(list(out.glob("*.mp4"))) == 3


DEMO_JOB = [
    str(REPO / "workflows" / "api" / "sonic_lite_fast_api.json"),
    "--image",
    str(REPO / "demo" / "sonic_example_face.jpg"),
    "--audio",
    str(REPO / "demo" / "sonic_example_speech.wav"),
    "--quiet",
]


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and not captured.out, captured
    return err


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("/proc/x", "-o /proc/x: cannot create the folder"),  # /proc takes no new folders
        ("a_file", "is a file, not a folder"),
    ],
)
def test_an_unusable_output_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch, out, says):
    from comfyui_sonic.runner import embedded

    monkeypatch.setattr(embedded, "run_embedded", lambda *a, **k: pytest.fail("rendered anyway"))
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    assert main(["run", *DEMO_JOB, "-o", out]) == 2
    err = one_line_error(capsys)
    assert says in err and "give a" in err


def test_batch_out_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "out").write_text("")
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("image,audio\nface.jpg,speech.wav\n")
    code = main(
        ["batch", DEMO_JOB[0], str(manifest), "--host", "http://127.0.0.1:9", "--out", str(tmp_path / "out")]
    )
    assert code == 2 and "--out" in one_line_error(capsys)


@pytest.mark.parametrize("command", ["status", "report"])
def test_status_and_report_refuse_a_file_that_is_not_a_journal(tmp_path, capsys, command):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello\n")
    other_db = tmp_path / "other.sqlite"
    with sqlite3.connect(other_db) as db:
        db.execute("CREATE TABLE photos (name TEXT)")
    assert main([command, str(text_file)]) == 2
    assert "not a journal" in one_line_error(capsys)
    assert main([command, str(other_db)]) == 2
    assert "not a sonic-runner journal" in one_line_error(capsys)
    with sqlite3.connect(other_db) as db:  # and nothing was added to the user's database
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["photos"]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", *DEMO_JOB, "--host", "http://gpu 1:8188"],
        ["hosts", "--host", "http://gpu 1:8188 name=gpu1"],
        ["batch", DEMO_JOB[0], "jobs.csv", "--host", "http://user:pw@gpu 1:8188", "--out", "o"],
    ],
)
def test_a_host_url_with_a_space_is_a_one_line_error(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert "cannot contain spaces" in err and "'1:8188'" in err and "pw" not in err
