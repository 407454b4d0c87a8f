"""Two glibc malloc arenas for the long-running processes (``serve``, ``worker``), so their resident
memory stays flat under load.

glibc gives a thread that finds the main arena busy an arena of its own, up to eight per core.
A replica's request bodies, S3 calls and database rows are allocated and freed across
Starlette's thread pool (up to 40 threads), so each of those arenas keeps pages that it freed
but cannot hand back while a few live blocks sit among them. Measured on this project's 2-core
machine, one replica at 25 submissions/s for 20 minutes: glibc's memory in use stayed at
~29 MB while its retained free memory grew 15 -> 55 MB, and the resident size 144 -> 177 MB
in steps (a soak reads that as a leak). With two arenas the same run held 144 -> 148 MB. The
threads mostly wait on I/O, not on malloc's locks: the API ramp run with the cap met its latency
target (50 submissions/s, p99 182 ms; benchmarks/load/README.md).

A fleet worker runs the same pattern (a consumer, lease renewals, a host's websocket and HTTP
calls on their own threads), so it is capped the same way. Capped, its job threads still left
free pages in their arena: in a 30-minute fleet soak the workers grew 4-8% while Python's own heap
was flat (tracemalloc), so a worker also hands glibc's free pages back after each job
(``release_free_memory``).

``MALLOC_ARENA_MAX`` in the environment wins: an operator who set it keeps what they chose.
Elsewhere than glibc (macOS, musl, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h
DEFAULT_ARENAS = 2


def cap_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's arenas at ``arenas``; True when the cap was set.

    Call it first thing in the process, before threads start: arenas already made stay.
    """
    if arenas < 1:
        raise ValueError(f"malloc arenas must be at least 1, got {arenas}")
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Give the pages glibc holds free in every arena back to the system; True when it gave some.

    Why: what a job allocates on its own thread (a host's answers, downloads, the store's rows) is
    freed in that thread's arena, between blocks still in use, and glibc keeps those pages. A
    worker calls this after each job. Cheap next to a job: it walks the free chunks once.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (once per process: a worker asks after every job)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version"):  # musl has mallopt as a stub that does nothing
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc
