"""What the operator sees: live progress, a plain log line when not on a terminal, quiet and JSON-lines modes."""

from __future__ import annotations

import io
import json

from comfyui_sonic.runner.display import (
    BatchTally,
    JsonLinesSink,
    NodeProgressDisplay,
    QuietSink,
    RichProgressDisplay,
)
from rich.console import Console


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(job_id, state, host="gpu1", row=1, error=None, error_kind=None):
    return {
        "event": "job",
        "job_id": job_id,
        "row": row,
        "state": state,
        "host": host,
        "attempt": 1,
        "error": error,
        "error_kind": error_kind,
        "outputs": [],
        "ts": 0.0,
    }


def batch_event(total, done, dead, running, queued):
    return {
        "event": "batch",
        "total": total,
        "done": done,
        "dead": dead,
        "running": running,
        "queued": queued,
        "ts": 0,
    }


def small_batch() -> list[dict]:
    """Four jobs on two hosts: two done, one retried after a failure, one dead for a missing face."""
    return [
        batch_event(4, 0, 0, 0, 4),
        job("a", "uploading"),
        job("a", "running"),
        job("b", "running", host="gpu2"),
        job("a", "fetching"),
        job("a", "done"),
        job("b", "failed", host="gpu2", error="connection lost"),
        job("b", "queued", host=None),
        job("b", "running", host="gpu1"),
        job("c", "running", host="gpu2", row=3),
        job("c", "dead", host="gpu2", row=3, error="image: no face found", error_kind="input"),
        {"event": "host", "host": "gpu2", "healthy": False, "error": "connection refused"},
        batch_event(4, 1, 1, 1, 1),
    ]


def test_the_tally_counts_per_host_done_running_failed_and_dead():
    tally = BatchTally()
    for event in small_batch():
        tally.update(event)
    assert tally.host_rows() == [
        ("gpu1", 1, 1, 0, 0, None),
        ("gpu2", 0, 0, 1, 1, "connection refused"),
    ]
    snap = tally.snapshot()
    assert (snap["total"], snap["done"], snap["dead"], snap["running"], snap["waiting"]) == (4, 1, 1, 1, 1)


def test_the_eta_follows_this_runs_speed():
    clock = FakeClock()
    tally = BatchTally(clock=clock)
    tally.update(batch_event(110, 10, 0, 0, 100))  # a resumed batch: 10 were finished before
    clock.now += 20
    tally.update(batch_event(110, 20, 0, 2, 88))  # 10 more in 20 s -> 90 left at 2 s each
    assert tally.snapshot()["eta"] == 180


def test_without_a_terminal_a_plain_status_line_is_printed_periodically():
    clock = FakeClock()
    out = io.StringIO()
    display = RichProgressDisplay(console=Console(file=out, width=100), plain_interval=10, clock=clock)
    assert display.live_mode is False
    events = small_batch()
    for event in events[:5]:
        display(event)
    assert out.getvalue() == ""  # under 10 s: nothing but errors would be printed
    clock.now += 11
    for event in events[5:]:
        display(event)
    display.close()
    lines = out.getvalue().splitlines()
    assert any("job c (row 3) dead on gpu2 [input]: image: no face found" in line for line in lines)
    assert any("host gpu2 is unhealthy: connection refused" in line for line in lines)
    status = [line for line in lines if "finished (" in line]
    assert len(status) == 2  # one after 10 s, one at the end
    assert "1/4 finished (1 done, 0 dead), 1 running, 2 waiting" in status[0]
    assert "2/4 finished (1 done, 1 dead), 1 running, 1 waiting, elapsed 11s, ETA 11s" in status[-1]
    assert (
        "| gpu1: 1 done, 1 running, 0 failed, 0 dead | gpu2: 0 done, 0 running, 1 failed, 1 dead (down)"
        in status[-1]
    )
    assert lines[-1].endswith("batch: 4 jobs, 1 done, 1 dead, 2 not finished in 11s")
    assert "\x1b[" not in out.getvalue()


def test_on_a_terminal_a_live_view_shows_the_bar_and_the_hosts():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with RichProgressDisplay(console=console, refresh_per_second=20) as display:
        assert display.live_mode is True
        for event in small_batch():
            display(event)
    text = out.getvalue()
    assert "2/4" in text and "ETA" in text
    assert "gpu1" in text and "gpu2" in text and "down: connection refused" in text
    assert "job c (row 3) dead on gpu2 [input]: image: no face found" in text
    assert "batch: 4 jobs, 1 done, 1 dead, 2 not finished" in text


def test_quiet_mode_prints_only_errors_and_the_final_summary():
    out, err = io.StringIO(), io.StringIO()
    sink = QuietSink(out=out, err=err)
    for event in small_batch():
        sink(event)
    sink.close()
    assert err.getvalue().splitlines() == [
        "job c (row 3) dead on gpu2 [input]: image: no face found",
        "host gpu2 is unhealthy: connection refused",
    ]
    assert out.getvalue().splitlines() == ["batch: 4 jobs, 1 done, 1 dead, 2 not finished in 0s"]


def test_json_lines_mode_writes_one_object_per_event():
    stream = io.StringIO()
    sink = JsonLinesSink(stream)
    events = small_batch()
    for event in events:
        sink(event)
    sink.close()
    decoded = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert decoded == events


def test_a_run_in_process_prints_what_each_node_shows_in_comfyui():
    """`sonic-runner run` without --host: the face crop and any warning, one line each, never wrapped."""
    out = io.StringIO()
    display = NodeProgressDisplay(console=Console(file=out, width=60))
    display({"event": "node", "node": "4", "title": "Prepare"})
    crop = (
        "face crop (130, 31, 322, 223) -> 512x512; 1.00 s of audio (25 frames at 25 fps); detector blazeface"
    )
    warning = (
        "another face candidate at (10, 10, 40, 40) was not used (low detector confidence: 0.10 vs 0.90)"
    )
    display({"event": "executed", "node": "4", "title": "Prepare", "output": {"text": [warning, crop]}})
    display(
        {"event": "executed", "node": "7", "title": "Save MP4", "output": {"images": [{"filename": "a.mp4"}]}}
    )
    assert out.getvalue().splitlines() == ["running Prepare", f"Prepare: {warning}", f"Prepare: {crop}"]


class BrokenStream(io.StringIO):
    def write(self, text):
        raise OSError("disk full")


def test_sinks_never_raise_into_the_batch():
    quiet = QuietSink(out=BrokenStream(), err=BrokenStream())
    jsonl = JsonLinesSink(BrokenStream())
    live = RichProgressDisplay(console=Console(file=BrokenStream(), force_terminal=True))
    for sink in (quiet, jsonl, live):
        sink(job("c", "dead", error="boom"))
        sink({"event": "job"})  # a malformed event
        sink(None)  # not even a dict
        sink.close()
        assert sink.errors >= 1


def test_hosts_are_shown_by_their_given_name_with_the_safe_url():
    named = [
        {**job("a", "running", host="http://10.0.0.5:8188"), "host_name": "gpu1"},
        {**job("a", "dead", host="http://10.0.0.5:8188", error="boom"), "host_name": "gpu1"},
        {**job("b", "running", host="http://10.0.0.6:8188"), "host_name": "10.0.0.6:8188"},  # default name
        {
            "event": "host",
            "host": "http://10.0.0.5:8188",
            "host_name": "gpu1",
            "healthy": False,
            "excluded": True,
            "error": "cannot run this workflow, no more jobs go there: SonicModelError: weights missing",
        },
    ]
    out, err = io.StringIO(), io.StringIO()
    sink = QuietSink(out=out, err=err)
    for event in named:
        sink(event)
    sink.close()
    assert err.getvalue().splitlines() == [
        "job a (row 1) dead on gpu1 (http://10.0.0.5:8188): boom",
        "host gpu1 (http://10.0.0.5:8188) is excluded from this batch: cannot run this workflow, "
        "no more jobs go there: SonicModelError: weights missing",
    ]
    rows = {row[0]: row for row in sink.tally.host_rows()}
    assert set(rows) == {"gpu1 (http://10.0.0.5:8188)", "http://10.0.0.6:8188"}
    assert "SonicModelError" in rows["gpu1 (http://10.0.0.5:8188)"][5]
    assert (
        "gpu1 (http://10.0.0.5:8188): 0 done, 0 running, 0 failed, 1 dead (excluded)"
        in sink.tally.status_line()
    )


def test_while_no_host_can_work_the_display_says_how_long_it_waited_and_until_when():
    import time

    now = time.time()
    down = {**batch_event(4, 1, 0, 0, 3), "no_host_since": now - 95, "give_up_at": now + 505}
    until = time.strftime("%H:%M:%S", time.localtime(now + 505))
    tally = BatchTally()
    tally.update(down)
    assert tally.waiting_line(now) == (
        f"no host can work for 1m35s; waiting until {until} (--give-up-after), "
        "then stopping with the unfinished jobs queued"
    )
    assert "no host can work for" in tally.status_line()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=300, color_system=None)
    with RichProgressDisplay(console=console, refresh_per_second=20) as display:
        display(down)
    assert f"waiting until {until}" in out.getvalue()
    tally.update(batch_event(4, 2, 0, 1, 1))  # a host answers again: the line goes away
    assert tally.waiting_line(now) is None and "no host can work" not in tally.status_line()
