"""A fake ComfyUI 0.3.6x server for protocol tests (loopback only). See server.py for what it mirrors.

In-thread (fast, for most tests)::

    with FakeComfy(run_seconds=0.05) as srv:          # srv.url = "http://127.0.0.1:<port>"
        srv.set_faults(oom=1, http_500={"/prompt": 2})
        srv.kill(); srv.revive(); srv.restart()        # host down / back (queue + history lost)
        srv.executions, srv.submissions, srv.uploads, srv.outputs_written   # TEST-ONLY probes

As a child process (for kill -9 of a host)::

    host = FakeComfyProcess(tmp_path / "h1", run_seconds=0.2).start()
    host.set_faults(die_mid_job=1); host.kill(); host.start(); host.executions()

Faults (all "next N" counters unless noted): http_500 {route: N}, validation_error, oom,
input_error, exec_error, drop_socket, die_mid_job, silent_socket (bool), slow (seconds),
oom_above (rule: min_resolution above it -> OOM), input_error_marker (rule: default "noface").
"""

from .process import FakeComfyProcess, free_port
from .server import EXECUTIONS_FILE, FakeComfy, Faults

__all__ = ["FakeComfy", "FakeComfyProcess", "Faults", "EXECUTIONS_FILE", "free_port"]
