"""Which job goes to which host next: priority lanes, capability routing, load, health.

Plain data structures and no threads or I/O, so every rule is unit-testable with a fake
clock. The batch owns the lock around it and performs the actual network calls.

Rules:
- Priority lanes: every ready P0 job is placed before any P1, P1 before P2; inside a lane
  jobs go in manifest-row order (retries keep their row's place).
- Capability routing: a host may declare ``max_resolution`` and/or ``vram_gb``. A job is
  never sent to a host that declares less than it needs; a job that no configured host
  can take is reported at once (the batch marks it dead with that message).
- Load: among capable, healthy hosts with a free slot, the one with the least in-flight
  work wins (ties: the one that waited longest). ``cap`` slots per host (default 2 = one
  running plus one queued behind it, so the GPU never idles between jobs).
- Health: a host that fails a call is unhealthy; it is probed again after an exponential
  backoff and gets no new work until a probe succeeds. A healthy host with nothing in flight
  (idle) is probed when it has not answered for ``idle_check_interval`` seconds, and gets no
  new work until that probe succeeds, so a host that died while idle is never chosen.
- Exclusion: a host that cannot run the batch's workflow at all (its model files are missing)
  is excluded for the rest of the batch; a job that only excluded hosts could take is
  reported at once like a job no host can take.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from .jobs import JobRecord

#: Estimated GPU memory (GB) a Sonic job needs at a min_resolution tier. Used only for hosts
#: that declare ``vram_gb`` without ``max_resolution``; a job spec may override with "vram_gb".
VRAM_GB_FOR_RESOLUTION: dict[int, float] = {384: 8.0, 512: 10.0, 768: 16.0, 1024: 24.0}


@dataclass
class HostState:
    """What the scheduler tracks about one host (``name`` is the host's safe URL, its identity).

    ``label`` is what a person reads (the configured name with the safe URL).
    """

    name: str
    max_resolution: int | None = None
    vram_gb: float | None = None
    cap: int = 2
    inflight: set[str] = field(default_factory=set)
    healthy: bool = True
    error: str | None = None
    unreachable_since: float | None = None
    check_failures: int = 0
    next_check_at: float = 0.0
    last_dispatch: int = -1
    label: str = ""
    excluded: str | None = None  # why the host cannot run this batch's workflow
    last_ok: float | None = None  # when the host last answered (a probe or a job call)
    checking: bool = False  # a health probe is in flight

    @property
    def free(self) -> int:
        return self.cap - len(self.inflight)


def max_resolution_for_vram(vram_gb: float | None) -> int | None:
    """The largest resolution tier a card of ``vram_gb`` fits (None: unknown, no limit)."""
    if vram_gb is None:
        return None
    fits = [r for r, gb in sorted(VRAM_GB_FOR_RESOLUTION.items()) if gb <= vram_gb]
    return fits[-1] if fits else min(VRAM_GB_FOR_RESOLUTION)


def vram_needed(job: JobRecord) -> float | None:
    explicit = job.spec.get("vram_gb")
    if explicit not in (None, ""):
        return float(explicit)
    if job.resolution is None:
        return None
    fits = [gb for r, gb in sorted(VRAM_GB_FOR_RESOLUTION.items()) if r >= job.resolution]
    return fits[0] if fits else None


def host_can_take(host: HostState, job: JobRecord) -> bool:
    """True when nothing the host declares (or was found to lack) rules the job out."""
    if host.excluded is not None:
        return False
    if host.max_resolution is not None and job.resolution is not None:
        if job.resolution > host.max_resolution:
            return False
    if host.vram_gb is not None:
        needed = vram_needed(job)
        explicit = job.spec.get("vram_gb") not in (None, "")
        # The resolution->VRAM table applies only to hosts that declare no max_resolution.
        if needed is not None and (explicit or host.max_resolution is None) and needed > host.vram_gb:
            return False
    return True


class Scheduler:
    def __init__(
        self,
        hosts: list[HostState],
        *,
        health_backoff_base: float = 1.0,
        health_backoff_cap: float = 60.0,
        idle_check_interval: float | None = None,
    ) -> None:
        if not hosts:
            raise ValueError("no hosts: give at least one --host URL or a --hosts-file")
        self.hosts: dict[str, HostState] = {h.name: h for h in hosts}
        self.health_backoff_base = health_backoff_base
        self.health_backoff_cap = health_backoff_cap
        self.idle_check_interval = idle_check_interval  # None: idle hosts are trusted (unit tests)
        self._lanes: dict[tuple[int, int, float], list[tuple[int, int, JobRecord]]] = {}
        self._delayed: list[tuple[float, int, JobRecord]] = []
        self._seq = itertools.count()
        self._dispatches = itertools.count()
        self._where: dict[str, str] = {}  # job_id -> host holding it

    # ------------------------------------------------------------------ queueing
    def why_unplaceable(self, job: JobRecord) -> str | None:
        """None if some configured host could ever take the job, else a one-line reason."""
        if any(host_can_take(h, job) for h in self.hosts.values()):
            return None
        if any(h.excluded is not None for h in self.hosts.values()):
            return "no host can run it: " + "; ".join(self._why_not(h, job) for h in self.hosts.values())
        parts = []
        for h in self.hosts.values():
            limits = []
            if h.max_resolution is not None:
                limits.append(f"max_resolution={h.max_resolution}")
            if h.vram_gb is not None:
                limits.append(f"vram_gb={h.vram_gb:g}")
            parts.append(f"{h.name} ({', '.join(limits) or 'no limits'})")
        need = f"min_resolution={job.resolution}"
        gb = vram_needed(job)
        if gb is not None:
            need += f" (~{gb:g} GB VRAM)"
        return f"no host can take this job: it needs {need}; hosts: {'; '.join(parts)}"

    def _why_not(self, host: HostState, job: JobRecord) -> str:
        label = host.label or host.name
        if host.excluded is not None:
            return f"{label}: {host.excluded}"
        limits = []
        if host.max_resolution is not None:
            limits.append(f"max_resolution={host.max_resolution}")
        if host.vram_gb is not None:
            limits.append(f"vram_gb={host.vram_gb:g}")
        return f"{label}: too small for min_resolution={job.resolution} ({', '.join(limits)})"

    def exclude(self, name: str, reason: str) -> bool:
        """The host cannot run this batch's workflow: no more jobs go there. True if it is news."""
        host = self.hosts[name]
        if host.excluded is not None:
            return False  # keep the first reason
        host.excluded = reason
        return True

    def take_unplaceable(self) -> list[JobRecord]:
        """Remove and return the waiting jobs that no host can take any more (after an exclusion)."""
        stranded: list[JobRecord] = []
        for key in list(self._lanes):
            lane = self._lanes[key]
            keep = [item for item in lane if self.why_unplaceable(item[2]) is None]
            if len(keep) != len(lane):
                stranded += [item[2] for item in lane if self.why_unplaceable(item[2]) is not None]
                heapq.heapify(keep)
                if keep:
                    self._lanes[key] = keep
                else:
                    del self._lanes[key]
        keep_delayed = [item for item in self._delayed if self.why_unplaceable(item[2]) is None]
        if len(keep_delayed) != len(self._delayed):
            stranded += [item[2] for item in self._delayed if self.why_unplaceable(item[2]) is not None]
            heapq.heapify(keep_delayed)
            self._delayed = keep_delayed
        return stranded

    def push(self, job: JobRecord) -> None:
        """Queue a job that is ready now or at ``job.next_attempt_at``."""
        heapq.heappush(self._delayed, (job.next_attempt_at, next(self._seq), job))

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, seq, job = heapq.heappop(self._delayed)
            key = (job.priority, job.resolution or 0, float(job.spec.get("vram_gb") or 0))
            heapq.heappush(self._lanes.setdefault(key, []), (job.row, seq, job))

    def pending(self) -> int:
        return len(self._delayed) + sum(len(lane) for lane in self._lanes.values())

    def inflight(self) -> int:
        return len(self._where)

    # ------------------------------------------------------------------ dispatch
    def next_assignment(self, now: float) -> tuple[JobRecord, HostState] | None:
        """Take the most urgent job that some host can run now, and the host to run it."""
        self._promote(now)
        heads = sorted((key[0], lane[0][0], key) for key, lane in self._lanes.items() if lane)
        for _, _, key in heads:
            job = self._lanes[key][0][2]
            host = self._best_host(job, now)
            if host is None:
                continue
            heapq.heappop(self._lanes[key])
            if not self._lanes[key]:
                del self._lanes[key]
            self.hold(job.job_id, host.name)
            return job, host
        return None

    def _best_host(self, job: JobRecord, now: float) -> HostState | None:
        candidates = [
            h
            for h in self.hosts.values()
            if h.healthy and h.free > 0 and not self._needs_check(h, now) and host_can_take(h, job)
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda h: (len(h.inflight), h.last_dispatch))

    def hold(self, job_id: str, host_name: str) -> None:
        """Count ``job_id`` against ``host_name``'s slots (dispatch, or a resumed attempt)."""
        host = self.hosts[host_name]
        host.inflight.add(job_id)
        host.last_dispatch = next(self._dispatches)
        self._where[job_id] = host_name

    def release(self, job_id: str) -> None:
        """The job no longer occupies its host (finished, failed, or moved)."""
        name = self._where.pop(job_id, None)
        if name is not None:
            self.hosts[name].inflight.discard(job_id)

    # ------------------------------------------------------------------ health
    def mark_unhealthy(self, name: str, now: float, error: str) -> bool:
        """Record a failed call/probe; returns True if the host just became unhealthy."""
        host = self.hosts[name]
        changed = host.healthy
        host.healthy = False
        host.error = error
        if host.unreachable_since is None:
            host.unreachable_since = now
        host.check_failures += 1
        delay = min(self.health_backoff_cap, self.health_backoff_base * 2 ** (host.check_failures - 1))
        host.next_check_at = now + delay
        return changed

    def mark_healthy(self, name: str) -> bool:
        """Record a successful probe; returns True if the host just became healthy again."""
        host = self.hosts[name]
        changed = not host.healthy
        host.healthy = True
        host.error = None
        host.unreachable_since = None
        host.check_failures = 0
        host.next_check_at = 0.0
        return changed

    def _needs_check(self, host: HostState, now: float) -> bool:
        """An idle host that has not answered for a while is asked before it gets work."""
        if host.checking:
            return True
        if self.idle_check_interval is None or host.inflight or host.excluded is not None:
            return False
        return host.last_ok is None or now - host.last_ok >= self.idle_check_interval

    def due_checks(self, now: float) -> list[HostState]:
        """Hosts to probe now: unhealthy ones whose backoff ran out, idle ones not heard from lately."""
        due = []
        for h in self.hosts.values():
            if h.checking:
                continue
            if (not h.healthy and h.next_check_at <= now) or (h.healthy and self._needs_check(h, now)):
                due.append(h)
        return due

    def next_wakeup(self) -> float | None:
        """Earliest time something becomes due (a delayed job or a health probe)."""
        times = [h.next_check_at for h in self.hosts.values() if not h.healthy and not h.checking]
        if self.idle_check_interval is not None:
            times += [
                (h.last_ok or 0.0) + self.idle_check_interval
                for h in self.hosts.values()
                if h.healthy and not h.inflight and not h.checking and h.excluded is None
            ]
        if self._delayed:
            times.append(self._delayed[0][0])
        return min(times) if times else None
