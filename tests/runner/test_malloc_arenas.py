"""serve and worker processes keep glibc to two malloc arenas, however many threads allocate at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas")

# Sixteen threads malloc and free through ctypes (which lets go of the GIL), so they contend for
# the main arena as a replica's thread pool does; then malloc_info says how many arenas exist.
PROBE = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from comfyui_sonic.runner.malloc_arenas import cap_malloc_arenas
    print("capped" if (sys.argv[1] == "cap" and cap_malloc_arenas()) else "not capped")
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    def churn():
        for _ in range(20000):
            libc.free(libc.malloc(2000))
    threads = [threading.Thread(target=churn) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as report:
        stream = libc.fopen(report.name.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        print("arenas", open(report.name).read().count("<heap nr="))
    """
)


def arenas_after_contention(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=environ, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    return out[0], int(out[1].split()[1])


def test_two_arenas_however_many_threads_allocate():
    assert arenas_after_contention("cap") == ("capped", 2)


def test_without_the_cap_the_same_threads_make_many_arenas():
    said, arenas = arenas_after_contention("none")
    assert said == "not capped" and arenas > 2


def test_an_operators_malloc_arena_max_wins():
    assert arenas_after_contention("cap", MALLOC_ARENA_MAX="4")[0] == "not capped"


def test_a_cap_below_one_is_refused():
    from comfyui_sonic.runner.malloc_arenas import cap_malloc_arenas

    with pytest.raises(ValueError, match="at least 1"):
        cap_malloc_arenas(0)


# A thread fills its arena with 4 kB blocks and frees all but one in sixteen, as a job's thread
# leaves a few live blocks among what it freed: glibc keeps those pages until told to let go.
RELEASE_PROBE = textwrap.dedent(
    """
    import ctypes, threading
    from comfyui_sonic.runner.malloc_arenas import cap_malloc_arenas, release_free_memory
    cap_malloc_arenas()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    kept = []
    def job():
        blocks = [libc.malloc(4000) for _ in range(25000)]
        for i, block in enumerate(blocks):
            ctypes.memset(block, 1, 4000)
            (kept.append if i % 16 == 0 else libc.free)(block)
    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    before = rss_mb()
    released = release_free_memory()
    print(released, before, rss_mb())
    """
)


def test_release_gives_a_jobs_freed_pages_back():
    out = subprocess.run(
        [sys.executable, "-c", RELEASE_PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    released, before, after = out[0] == "True", float(out[1]), float(out[2])
    # ~190 MB written, ~12 MB of it still in use: most of the rest goes back to the system.
    assert released and before - after > 100, (before, after)
