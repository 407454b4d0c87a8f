"""``sonic-runner worker``: consume the pools a ComfyUI host can serve and run their jobs there.

Scheduling only: which messages to take, when to stop taking them, acknowledging after the
job's outcome is in the job store. The work of a job is ``JobHandler`` (handler.py, over
the shared ``AttemptExecutor``); the records are the ``JobStore``.

Why a kombu consumer rather than Celery's worker: a worker must stop consuming while its
host is unhealthy (the jobs stay in the queue for other hosts) and hand running jobs back
on SIGTERM, per host; Celery's prefork worker gives a task no such control. The messages
are Celery's (``send_task``, protocol 2) and the delivery rules are the ones Celery's
settings name: ack late (after the outcome is recorded), requeue when the worker is lost
(an unacked message goes back when its connection drops), prefetch = ``--inflight``.

Threads: the main thread owns the AMQP connection (kombu connections are not thread-safe)
and applies every ack; one daemon thread per running job; a thread renews leases; a keeper
thread forwards cancel requests, probes unhealthy hosts and re-publishes jobs whose holder died.
"""

from __future__ import annotations

import functools
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..host_errors import HostError, one_line
from ..malloc_arenas import release_free_memory
from ..scheduler import max_resolution_for_vram
from ..secrets import HostSpec
from ..store import JobStore, StoreError
from . import dlq
from .errors import BrokerError, broker_error
from .handler import ActiveJobs, HandlerConfig, HeldHere, HostRefused, JobHandler
from .queues import MessageError, job_kwargs, parse_job_message, pool_queue, pools_for_host

log = logging.getLogger(__name__)

ACK, REQUEUE, DEAD_LETTER = "ack", "requeue", "dead"
#: How long the main loop waits for the broker before it looks for ended jobs to acknowledge.
RUNNING_WAKE_S, IDLE_WAKE_S = 0.02, 0.5
#: Exit codes: 0 stopped by a signal (jobs finished or handed back), 2 nothing to consume for.
EXIT_REFUSED = 2


class WorkerError(RuntimeError):
    """The worker cannot start or has nothing left to do: one line for the user (exit 2)."""


@dataclass
class WorkerOptions:
    inflight: int = 1
    drain_timeout: float = 120.0  # SIGTERM: wait this long for running jobs, then hand them back
    keeper_interval: float = 5.0  # lease renewal, cancel checks, host probes
    reap_interval: float = 15.0  # re-publish in-flight jobs whose holder's lease ran out
    reconnect_max: float = 10.0
    unpublished_after: float = 300.0  # a queued job with no confirmed message this old is published


@dataclass
class HostSlot:
    """One host's subscription: its channel and consumer, its jobs, its health."""

    spec: HostSpec
    client: Any
    handler: JobHandler
    pools: tuple[int, ...]
    running: int = 0
    healthy: bool = True
    down_since: float | None = None
    refused: str | None = None
    channel: Any = None
    consumer: Any = None
    consuming: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def wants_jobs(self) -> bool:
        return self.healthy and self.refused is None


class Worker:
    """One process consuming for one or more hosts (each with its own channel and prefetch)."""

    def __init__(
        self,
        broker_url: str,
        store: JobStore,
        hosts: list[HostSpec],
        config: HandlerConfig,
        publisher: Any,
        options: WorkerOptions | None = None,
        *,
        storage: Any = None,
        make_client: Callable[[HostSpec], Any] | None = None,
        on_job_end: Callable | None = None,
        fleet_hosts: list[HostSpec] | None = None,
        metrics: Any = None,
    ) -> None:
        if not store.records_events:
            raise ValueError(
                "a worker's JobStore must record state events (JobStore(url, record_events=True))"
            )
        self.broker_url = broker_url
        self.store = store
        self.config = config
        self.publisher = publisher
        self.options = options or WorkerOptions()
        self.storage = storage
        self._make_client = make_client or _default_client
        self._on_job_end = on_job_end
        self.metrics = metrics
        self.active = ActiveJobs()
        self._known = {h.safe_url: h for h in [*(fleet_hosts or []), *hosts]}
        self._other_clients: dict[str, Any] = {}
        self._done: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._keeper_done = threading.Event()  # set once running jobs are finished or handed back
        self._conn: Any = None
        self.slots = [self._slot(spec) for spec in hosts]
        self.exit_code = 0

    # ------------------------------------------------------------------ set-up
    def _slot(self, spec: HostSpec) -> HostSlot:
        client = self._make_client(spec)
        slot_ref: list[HostSlot] = []
        handler = JobHandler(
            self.store,
            self.publisher,
            spec,
            client,
            self.config,
            active=self.active,
            client_for=self._client_for,
            storage=self.storage,
            on_job_end=self._on_job_end,
            on_host_ok=lambda host: self._health(slot_ref[0], True),
            on_host_failed=lambda host, exc: self._health(slot_ref[0], False, exc),
            metrics=self.metrics,
        )
        pools = pools_for_host(
            spec.max_resolution or max_resolution_for_vram(spec.vram_gb), self.config.pools
        )
        slot = HostSlot(spec=spec, client=client, handler=handler, pools=pools)
        slot_ref.append(slot)
        return slot

    def host_gauges(self) -> list[tuple[str, int, bool]]:
        """(host, jobs running, healthy) of each slot, for the worker's /metrics."""
        return [
            (slot.spec.safe_url, slot.running, slot.healthy and slot.refused is None) for slot in self.slots
        ]

    def _client_for(self, host_url: str) -> Any:
        """A client for a host another worker used (to ask it about a job taken over)."""
        for slot in self.slots:
            if slot.spec.safe_url == host_url:
                return slot.client
        if host_url not in self._other_clients:
            spec = self._known.get(host_url) or HostSpec(url=host_url)
            self._other_clients[host_url] = self._make_client(spec)
        return self._other_clients[host_url]

    def preflight(self) -> None:
        """Check every host before consuming: our nodes missing -> that host is refused.

        An unreachable host is not refused: its slot starts paused and resumes when the host
        answers. With every host refused the worker has nothing to do (WorkerError, exit 2).
        """
        from ..hosts import check_host

        if not any(slot.pools for slot in self.slots):
            raise WorkerError(
                "no pool fits these hosts' max_resolution; lower --pools or raise max_resolution"
            )
        for slot in self.slots:
            report = check_host(slot.spec)
            if slot.spec.max_resolution is None:  # declared VRAM, else what the host reports
                vram = slot.spec.vram_gb if slot.spec.vram_gb is not None else report.vram_total_gb
                slot.pools = pools_for_host(max_resolution_for_vram(vram), self.config.pools)
            if not report.reachable:
                self._health(slot, False)
                log.warning("host %s is unreachable (%s); waiting for it", slot.spec.label, report.error)
            elif report.missing_nodes:
                slot.refused = (
                    f"host {slot.spec.label} lacks our nodes ({', '.join(report.missing_nodes)}); "
                    "install ComfyUI-Sonic there and restart ComfyUI"
                )
            elif not report.model_files:
                log.warning(
                    "host %s lists no Sonic weights: jobs of the sonic backend will be handed back",
                    slot.spec.label,
                )
            if not slot.pools:
                slot.refused = f"host {slot.spec.label}: no pool at or below its max_resolution"
        refused = [slot.refused for slot in self.slots if slot.refused]
        if len(refused) == len(self.slots):
            raise WorkerError("; ".join(refused) + "; not consuming")
        for line in refused:
            log.error("%s; not consuming for it", line)

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        """Consume until SIGTERM/SIGINT (exit 0) or until every host refused (exit 2)."""
        self._install_signals()
        renewer = threading.Thread(target=self._renewer, name="sonic-leases", daemon=True)
        keeper = threading.Thread(target=self._keeper, name="sonic-keeper", daemon=True)
        renewer.start()
        keeper.start()
        try:
            self._consume()
        finally:  # also after an error of our own: running jobs finish or go back, leases with them
            self._shutdown(renewer)
        return self.exit_code

    def _consume(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                self._ensure_connected()
                self._sync_consumers()
                # While jobs run, wake often: a finished job's ack (and with prefetch = inflight,
                # the next message) waits for this loop; idle, wait longer. (Waking every 2 ms, a
                # worker waiting on its host used 6.8% of a core, every 20 ms 3.3%; 20 ms of
                # hand-over is 0.05% of a 40 s job.)
                self._drain(RUNNING_WAKE_S if self._running() else IDLE_WAKE_S)
                backoff = 0.5
            except (OSError, *_connection_errors()) as exc:
                log.warning("broker connection lost (%s); reconnecting", one_line(exc))
                self._drop_connection()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.options.reconnect_max)
            if all(slot.refused for slot in self.slots) and not self._running():
                log.error("every host refused its jobs; stopping")
                self.exit_code = EXIT_REFUSED
                return

    def stop(self) -> None:
        self._stopping.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stopping.set())

    def _ensure_connected(self) -> None:
        if self._conn is not None:
            return
        from kombu import Connection

        conn = Connection(self.broker_url, heartbeat=30, connect_timeout=5)
        conn.ensure_connection(max_retries=1)
        self._conn = conn
        for slot in self.slots:
            slot.channel, slot.consumer, slot.consuming = None, None, False

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        for slot in self.slots:
            slot.channel, slot.consumer, slot.consuming = None, None, False
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - it is broken already
                pass

    def _sync_consumers(self) -> None:
        """Consume for a slot while its host is healthy and it has room; cancel otherwise."""
        from kombu import Consumer

        for slot in self.slots:
            want = slot.wants_jobs and not self._stopping.is_set()
            if want and not slot.consuming:
                if slot.channel is None:
                    slot.channel = self._conn.channel()
                    slot.consumer = Consumer(
                        slot.channel,
                        queues=[pool_queue(p) for p in slot.pools],
                        callbacks=[partial(self._on_message, slot)],
                        accept=["json"],
                        on_decode_error=partial(self._on_undecodable, slot),
                        auto_declare=True,
                    )
                    # One limit for the channel, over every pool's consumer: RabbitMQ applies a
                    # non-global prefetch to each consumer, which let a host hold a job per pool.
                    slot.consumer.qos(prefetch_count=self.options.inflight, apply_global=True)
                slot.consumer.consume()
                slot.consuming = True
                log.info("consuming %s for host %s", ",".join(map(str, slot.pools)), slot.spec.label)
            elif not want and slot.consuming:
                slot.consumer.cancel()
                slot.consuming = False
                why = slot.refused or ("stopping" if self._stopping.is_set() else "host unhealthy")
                log.info("paused consuming for host %s (%s)", slot.spec.label, why)

    def _drain(self, timeout: float) -> None:
        try:
            self._conn.drain_events(timeout=timeout)
        except TimeoutError:
            self._conn.heartbeat_check()
        self._apply_done()

    def _running(self) -> int:
        return sum(slot.running for slot in self.slots)

    # ------------------------------------------------------------------ messages
    def _on_undecodable(self, slot: HostSlot, message: Any, exc: Exception) -> None:
        """Not JSON, or a content type we do not accept (pickle): to the dead-letter queue.
        Left to kombu, the error leaves the main loop, the message goes back unacked, and the
        next worker of the pool stops on it the same way."""
        reason = f"cannot decode the message ({message.content_type}): {one_line(exc)}"
        log.error("dead-lettering a message: %s", reason)
        dlq.dead_letter(slot.channel, message, reason)

    def _on_message(self, slot: HostSlot, body: Any, message: Any) -> None:
        try:
            job_message = parse_job_message(job_kwargs(body, message.headers))
        except MessageError as exc:
            log.error("dead-lettering a message: %s", exc)
            dlq.dead_letter(slot.channel, message, str(exc))
            return
        if not slot.wants_jobs or self._stopping.is_set():
            message.reject(requeue=True)
            return
        with slot.lock:
            slot.running += 1
        channel = slot.channel
        redelivered = bool((message.delivery_info or {}).get("redelivered"))
        thread = threading.Thread(
            target=self._work,
            args=(slot, job_message, message, channel, redelivered),
            daemon=True,
            name="sonic-job",
        )
        thread.start()

    def _work(self, slot: HostSlot, job_message: Any, message: Any, channel: Any, redelivered: bool) -> None:
        verdict, reason = ACK, None
        try:
            slot.handler.handle(job_message, redelivered=redelivered)
        except MessageError as exc:
            verdict, reason = DEAD_LETTER, str(exc)
        except HostRefused as exc:
            slot.refused = str(exc)  # (the job went back to the queue for other hosts)
            log.error("%s; not consuming for this host any more", exc)
        except HeldHere as exc:
            log.info("%s; its message goes back to the queue", exc)
            verdict = REQUEUE
        except (StoreError, BrokerError) as exc:
            log.warning("job %s: %s; it goes back to the queue", job_message.job_id, exc)
            verdict = REQUEUE
        except Exception:  # noqa: BLE001 - a bug must not kill the worker; the job stays queued
            log.exception("job %s: unexpected error; it goes back to the queue", job_message.job_id)
            verdict = REQUEUE
        if verdict == REQUEUE:
            time.sleep(2.0)  # (not a hot loop of redeliveries)
        self._done.put((slot, message, channel, verdict, reason))

    def _apply_done(self) -> None:
        settled = False
        while True:
            try:
                slot, message, channel, verdict, reason = self._done.get_nowait()
            except queue.Empty:
                if settled:
                    release_free_memory()  # (a job's freed memory, else kept by its thread's arena)
                return
            settled = True
            with slot.lock:
                slot.running -= 1
            if channel is not slot.channel:
                continue  # its channel died; the broker has redelivered it already
            try:
                if verdict == ACK:
                    message.ack()
                elif verdict == DEAD_LETTER:
                    dlq.dead_letter(channel, message, reason or "refused by the worker")
                else:
                    message.reject(requeue=True)
            except Exception as exc:  # noqa: BLE001 - a closed channel: redelivered anyway
                log.info("could not settle a message (%s); the broker will redeliver it", one_line(exc))

    # ------------------------------------------------------------------ health
    def _health(self, slot: HostSlot, ok: bool, exc: HostError | None = None) -> None:
        if ok:
            if not slot.healthy:
                log.info("host %s is back", slot.spec.label)
            slot.healthy, slot.down_since = True, None
        elif slot.healthy:
            slot.healthy, slot.down_since = False, time.time()
            why = f": {exc.message}" if exc is not None else ""
            log.warning("host %s is unhealthy%s; not taking jobs for it", slot.spec.label, why)

    def _probe(self, slot: HostSlot) -> None:
        try:
            slot.client.system_stats()
        except Exception:  # noqa: BLE001 - a HostError or anything else means "not yet"
            return
        self._health(slot, True)

    # ------------------------------------------------------------------ keeper
    def _renewer(self) -> None:
        """Renew the running jobs' leases until the last one is settled - through a SIGTERM's
        drain too (renewals that stopped with the signal let the leases of jobs still finishing
        lapse, and other workers took them over and followed them a second time). A thread of
        its own: the keeper's host probes and interrupts can each wait 30 s on a hung host."""
        while not self._keeper_done.wait(self.options.keeper_interval):
            try:
                self.store.renew(self.config.worker, self.active.snapshot(), self.config.lease_s)
            except Exception as exc:  # noqa: BLE001 - renewing must keep going
                log.warning("renewing leases: %s", one_line(exc))

    def _keeper(self) -> None:
        """Forward cancels (also while draining), probe unhealthy hosts, reap expired leases."""
        last_reap = 0.0
        while not self._keeper_done.wait(self.options.keeper_interval):
            try:
                self._forward_cancels(self.active.snapshot())
                if self._stopping.is_set():
                    continue  # draining: no host to bring back, no other worker's jobs to take on
                for slot in self.slots:
                    if not slot.healthy and slot.refused is None:
                        self._probe(slot)
                if time.time() - last_reap >= self.options.reap_interval:
                    last_reap = time.time()
                    self._reap()
            except Exception as exc:  # noqa: BLE001 - the keeper must keep going
                log.warning("keeper: %s", one_line(exc))

    def _forward_cancels(self, active: list[str]) -> None:
        """A client asked to cancel a job this worker runs: stop its prompt on the host."""
        for job_id in self.store.cancel_requested(active):
            job = self.store.job(job_id)
            if job is None or job.final or not job.prompt_id or not job.host:
                continue
            client = self._client_for(job.host)
            try:
                if job.state == "submitted":
                    client.delete_queued([job.prompt_id])
                client.interrupt(job.prompt_id)
            except HostError as exc:
                log.warning("cancel of job %s on %s: %s", job_id, job.host, exc.message)

    def _reap(self) -> None:
        """Re-publish in-flight jobs whose holder stopped renewing (its message may be gone)."""
        held = set(self.active.snapshot())
        lease = self.config.lease_s
        expired_before = time.time() - lease
        for job, _batch in self.store.expired_leases(expired_before):
            if job.job_id in held or not self.store.mark_reaped(job, expired_before, 4 * lease):
                continue
            log.info("job %s: its worker stopped renewing; publishing it again", job.job_id)
            job.priority = 0  # (a continuation: ahead of new work in its pool)
            self.publisher.publish(job)
        for job in self.store.never_published(time.time() - self.options.unpublished_after):
            log.info("job %s was stored but never published (its publisher died); publishing it", job.job_id)
            self.publisher.publish(job)
            self.store.mark_published([job.job_id])

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self, renewer: threading.Thread) -> None:
        """Stop taking jobs, let running ones finish for the drain timeout, hand back the rest."""
        self._stopping.set()
        if self._conn is not None:
            try:
                self._sync_consumers()
            except Exception:  # noqa: BLE001 - the connection may be gone
                self._drop_connection()
        deadline = time.time() + self.options.drain_timeout
        if self._running():
            log.info(
                "stopping: waiting up to %.0f s for %d running job(s)",
                self.options.drain_timeout,
                self._running(),
            )
        while self._running() and time.time() < deadline:
            try:
                if self._conn is None:
                    self._ensure_connected()
                self._drain(0.5)
            except (OSError, *_connection_errors()):
                self._drop_connection()
                time.sleep(0.5)
                self._apply_done()
        # Renewals end before the leases are released (a late one would take a lease back); the
        # keeper, maybe waiting on a hung host, is left to end with the process.
        self._keeper_done.set()
        renewer.join(timeout=30)
        left = self.active.snapshot()
        for job_id in left:
            self.store.release(job_id, self.config.worker)
        if left:
            log.info("handed back %d running job(s) to the queue: %s", len(left), ", ".join(left))
        self._drop_connection()


@functools.cache
def _connection_errors() -> tuple[type[BaseException], ...]:
    from kombu import Connection
    from kombu.exceptions import OperationalError

    conn = Connection("amqp://")
    return (OperationalError, *conn.connection_errors, *conn.channel_errors)


def _default_client(spec: HostSpec) -> Any:
    from ..client import ComfyClient

    return ComfyClient(spec.base_url, headers=spec.headers)


def check_broker(broker_url: str) -> None:
    """Raise a one-line BrokerError unless the broker accepts a connection."""
    from kombu import Connection

    try:
        with Connection(broker_url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001
        raise broker_error(broker_url, exc) from None
