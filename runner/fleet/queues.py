"""The broker topology and the Celery app: pools, priorities, dead letters, delivery rules.

Why one queue per resolution pool: a worker subscribes only to the pools its host can
serve (a 24 GB card never pulls a 1024p job), and an OOM re-publishes the job one pool
down. Inside a pool RabbitMQ's ``x-max-priority`` orders P0 > P1 > P2. A message that a
worker rejects (unknown schema version, a job it cannot parse) goes to the dead-letter
exchange instead of looping or crashing the worker.

Delivery rules (at least once, never lost): persistent messages, publisher confirms,
``acks_late`` (ack after the job's outcome is in the job store), ``reject_on_worker_lost``
(a killed worker's job is redelivered), prefetch 1 (a worker holds one job it has not
started). RabbitMQ redelivers an unacked message after its ``consumer_timeout`` (30 min
by default): set it above the longest job on the broker (README).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kombu import Exchange, Queue

#: Version of the job message body; a worker dead-letters any other version with a reason.
MESSAGE_VERSION = 1
DEFAULT_POOLS: tuple[int, ...] = (512, 768, 1024)
TASK_NAME = "sonic.run_job"

JOBS_EXCHANGE = Exchange("sonic.jobs", type="direct", durable=True, delivery_mode="persistent")
DEAD_EXCHANGE = Exchange("sonic.dead", type="direct", durable=True, delivery_mode="persistent")
DEAD_QUEUE_NAME = "sonic.dead"
#: AMQP priorities 0..2: P0 (our 0, most urgent) is AMQP 2.
MAX_PRIORITY = 2
#: Retry backoff waits in the broker: a message sits in ``sonic.delay.<pool>.<s>s`` (a queue
#: whose messages expire after s seconds) and is dead-lettered back into its pool. Fixed steps,
#: because RabbitMQ expires messages only at a queue's head: one TTL per queue keeps the order.
DELAY_EXCHANGE = Exchange("sonic.delay", type="direct", durable=True, delivery_mode="persistent")
DELAY_STEPS: tuple[int, ...] = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 3600)


class PoolError(ValueError):
    """A job fits no pool (resolution above the largest): one line naming both."""


class MessageError(ValueError):
    """A message this worker cannot take (wrong version, missing fields): dead-lettered."""


def queue_name(pool: int) -> str:
    return f"sonic.pool.{pool}"


def parse_pools(text: str | Iterable[int] | None) -> tuple[int, ...]:
    """'512,768,1024' -> (512, 768, 1024), sorted; a bad value is a one-line error."""
    if text is None:
        return DEFAULT_POOLS
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        pools = tuple(sorted({int(str(p).strip()) for p in items if str(p).strip()}))
    except ValueError:
        raise PoolError(
            f"--pools {text!r}: give resolutions separated by commas, e.g. 512,768,1024"
        ) from None
    if not pools or any(p <= 0 for p in pools):
        raise PoolError(f"--pools {text!r}: give at least one positive resolution, e.g. 512,768,1024")
    return pools


def pool_for(resolution: int | None, pools: Sequence[int] = DEFAULT_POOLS) -> int:
    """The smallest pool that serves ``resolution`` (no resolution: the smallest pool)."""
    if resolution is None:
        return min(pools)
    for pool in sorted(pools):
        if resolution <= pool:
            return pool
    raise PoolError(
        f"resolution {resolution} is above the largest pool {max(pools)}; add a pool with --pools"
    )


def pools_for_host(max_resolution: int | None, pools: Sequence[int] = DEFAULT_POOLS) -> tuple[int, ...]:
    """The pools a host may consume: every pool at or below what it declares it can render."""
    if max_resolution is None:
        return tuple(sorted(pools))
    return tuple(p for p in sorted(pools) if p <= max_resolution)


def amqp_priority(priority: int) -> int:
    """Our P0/P1/P2 (0 = most urgent) as an AMQP priority (higher = sooner)."""
    return MAX_PRIORITY - max(0, min(MAX_PRIORITY, int(priority)))


def dead_queue() -> Queue:
    return Queue(DEAD_QUEUE_NAME, DEAD_EXCHANGE, routing_key=DEAD_QUEUE_NAME, durable=True)


def pool_queue(pool: int) -> Queue:
    name = queue_name(pool)
    return Queue(
        name,
        JOBS_EXCHANGE,
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-max-priority": MAX_PRIORITY + 1,
            "x-dead-letter-exchange": DEAD_EXCHANGE.name,
            "x-dead-letter-routing-key": DEAD_QUEUE_NAME,
        },
    )


def delay_step(seconds: float) -> int | None:
    """The delay queue step for a backoff of ``seconds`` (None: publish straight to the pool)."""
    if seconds < 0.5:
        return None
    return next((step for step in DELAY_STEPS if step >= seconds), DELAY_STEPS[-1])


def delay_queue(pool: int, step: int) -> Queue:
    name = f"sonic.delay.{pool}.{step}s"
    return Queue(
        name,
        DELAY_EXCHANGE,
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-message-ttl": int(step * 1000),
            "x-dead-letter-exchange": JOBS_EXCHANGE.name,
            "x-dead-letter-routing-key": queue_name(pool),
        },
    )


def all_queues(pools: Sequence[int] = DEFAULT_POOLS) -> list[Queue]:
    return [pool_queue(p) for p in sorted(pools)] + [dead_queue()]


@dataclass(frozen=True)
class JobMessage:
    """What a message says: which job, which batch. Everything else is in the job store."""

    job_id: str
    batch: str = ""
    version: int = MESSAGE_VERSION

    def kwargs(self) -> dict:
        return {"v": self.version, "job_id": self.job_id, "batch": self.batch}


def parse_job_message(kwargs: object) -> JobMessage:
    """The task's kwargs -> JobMessage, or MessageError saying why it is refused."""
    if isinstance(kwargs, (str, bytes)):
        try:
            kwargs = json.loads(kwargs)
        except ValueError:
            raise MessageError("message body is not JSON") from None
    if not isinstance(kwargs, dict):
        raise MessageError(f"message body is a {type(kwargs).__name__}, not an object")
    version = kwargs.get("v")
    if version != MESSAGE_VERSION:
        raise MessageError(f"message schema version {version!r} is not {MESSAGE_VERSION}; upgrade the worker")
    job_id = kwargs.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise MessageError("message has no job_id")
    return JobMessage(job_id=job_id, batch=str(kwargs.get("batch") or ""))


def make_app(broker_url: str, pools: Sequence[int] = DEFAULT_POOLS, *, longest_job_s: float = 3600):
    """The Celery app of publishers and workers, configured for at-least-once, never-lost delivery."""
    from celery import Celery

    app = Celery("sonic", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_queues=all_queues(pools),
        task_default_queue=queue_name(min(pools)),
        task_default_exchange=JOBS_EXCHANGE.name,
        task_default_delivery_mode="persistent",
        task_create_missing_queues=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=False,
        task_queue_max_priority=MAX_PRIORITY + 1,
        task_default_priority=amqp_priority(1),
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_time_limit=None,
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # The worker's own deadline for one job: above the longest job (the broker's
        # consumer_timeout must be above this too, or the broker redelivers first).
        broker_heartbeat=30,
    )
    app.conf.sonic_longest_job_s = longest_job_s
    return app


def publish_job(
    app, message: JobMessage, *, pool: int, priority: int, delay: float = 0.0, producer=None
) -> None:
    """Publish one job to its pool (after ``delay`` seconds, through a delay queue) with its
    priority; returns once the broker confirmed it. Declare the delay queue first
    (``declare_delay_queue``)."""
    step = delay_step(delay)
    queue = pool_queue(pool) if step is None else delay_queue(pool, step)
    app.send_task(
        TASK_NAME,
        kwargs=message.kwargs(),
        queue=queue,
        routing_key=queue.routing_key,
        exchange=queue.exchange,
        priority=amqp_priority(priority),
        task_id=f"{message.job_id}",
        producer=producer,
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.5, "interval_step": 1, "interval_max": 3},
    )


def job_kwargs(body: object, headers: dict | None) -> object:
    """The kwargs a message carries: Celery's protocol 2 body ``[args, kwargs, embed]`` or a bare object."""
    task = (headers or {}).get("task")
    if task is not None and task != TASK_NAME:
        raise MessageError(f"message is for task {task!r}, not {TASK_NAME}")
    if isinstance(body, (list, tuple)) and len(body) == 3 and isinstance(body[1], dict):
        return body[1]
    return body


def declare_topology(broker_url: str, pools: Sequence[int] = DEFAULT_POOLS) -> None:
    """Declare the exchanges and every pool queue (idempotent; publishers and workers call it).

    Declaring up front means a job published before any worker started is kept, never
    dropped as unroutable.
    """
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as conn:
        channel = conn.channel()
        for queue in all_queues(pools):
            queue(channel).declare()
        DELAY_EXCHANGE(channel).declare()
        channel.close()


def declare_delay_queues(broker_url: str, pools: Sequence[int] = DEFAULT_POOLS) -> None:
    """Declare every delay queue of ``pools`` (idempotent; a worker calls it once at start)."""
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as conn:
        channel = conn.channel()
        DELAY_EXCHANGE(channel).declare()
        for pool in pools:
            for step in DELAY_STEPS:
                delay_queue(pool, step)(channel).declare()
        channel.close()
