"""The stack's process bookkeeping: whatever it started is stopped when it ends."""

from __future__ import annotations

import subprocess
import sys

import psutil

from benchmarks.load.components import own_children, stop_children_since

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_child_the_stack_lost_track_of_is_stopped_and_an_older_one_is_not():
    # A signal during Popen unwinds before the pid comes back: only "started since" can find it.
    older = subprocess.Popen(SLEEP)
    try:
        before = own_children()
        lost = subprocess.Popen(SLEEP)
        name = psutil.Process(lost.pid).name()
        assert stop_children_since(before) == [f"{name} -c import time; time.sleep(60)"]
        assert not psutil.pid_exists(lost.pid)  # stopped and reaped
        assert older.poll() is None
    finally:
        older.kill()
        older.wait()


def test_a_child_that_ignores_sigterm_is_killed():
    before = own_children()  # the suite's own servers are not this test's to stop
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert stubborn.stdout.readline().strip() == "ready"
    assert len(stop_children_since(before, timeout=1.0)) == 1
    assert stubborn.wait(15) == -9  # SIGKILL
    stubborn.stdout.close()
