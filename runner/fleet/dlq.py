"""``sonic-runner dlq list|retry|purge``: what went to the dead-letter queue, and re-driving it.

Messages land there when a worker rejects them (unknown schema version, a body it cannot
parse) or when a job ends dead and its message is dead-lettered. ``list`` looks without
taking anything (messages are fetched unacknowledged, then handed back); ``retry``
re-publishes each to the pool queue it died in (from RabbitMQ's ``x-death`` header);
``purge`` drops them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kombu import Connection

from .errors import broker_error
from .queues import DEAD_EXCHANGE, DEAD_QUEUE_NAME, JOBS_EXCHANGE, dead_queue


@dataclass
class DeadLetter:
    job_id: str | None
    queue: str | None
    reason: str
    body: object
    priority: int | None


@contextmanager
def _connect(broker_url: str) -> Iterator[Connection]:
    """A connection, or a one-line BrokerError when the broker cannot be reached."""
    conn = Connection(broker_url, connect_timeout=5)
    try:
        conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - kombu/amqp raise several kinds
        conn.release()
        raise broker_error(broker_url, exc) from None
    try:
        yield conn
    finally:
        conn.release()


def _describe(message) -> DeadLetter:
    headers = message.headers or {}
    deaths = headers.get("x-death") or []
    first = deaths[0] if deaths else {}
    try:
        body = message.decode()
    except Exception:  # noqa: BLE001 - a body we cannot decode is exactly what may be here
        body = message.body
    kwargs = body[1] if isinstance(body, (list, tuple)) and len(body) > 1 else body
    job_id = kwargs.get("job_id") if isinstance(kwargs, dict) else None
    reason = headers.get("sonic-reason") or first.get("reason") or "unknown"
    return DeadLetter(
        job_id=job_id,
        queue=headers.get("sonic-origin-queue") or first.get("queue"),
        reason=str(reason),
        body=body,
        priority=message.properties.get("priority"),
    )


def list_dead(broker_url: str, limit: int = 1000) -> list[DeadLetter]:
    """Dead letters, oldest first; nothing is removed from the queue."""
    out: list[DeadLetter] = []
    with _connect(broker_url) as conn:
        channel = conn.channel()
        queue = dead_queue()(channel)
        queue.declare()
        for _ in range(limit):
            message = queue.get(no_ack=False)
            if message is None:
                break
            out.append(_describe(message))
        channel.close()  # closing without acks hands every message back to the queue
    return out


def retry_dead(broker_url: str, limit: int = 1000) -> int:
    """Re-publish dead letters to the pool queue each died in; returns how many moved."""
    moved = 0
    with _connect(broker_url) as conn:
        channel = conn.channel()
        queue = dead_queue()(channel)
        queue.declare()
        producer = conn.Producer(channel)
        for _ in range(limit):
            message = queue.get(no_ack=False)
            if message is None:
                break
            dead = _describe(message)
            if not dead.queue or dead.queue == DEAD_QUEUE_NAME:
                message.requeue()
                break
            headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
            headers.pop("sonic-reason", None)
            headers.pop("sonic-origin-queue", None)
            producer.publish(
                message.body,
                exchange=JOBS_EXCHANGE,
                routing_key=dead.queue,
                headers=headers,
                priority=dead.priority or 0,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=2,
                properties={
                    k: v for k, v in message.properties.items() if k in ("correlation_id", "reply_to")
                },
            )
            message.ack()
            moved += 1
    return moved


def purge_dead(broker_url: str) -> int:
    """Drop every dead letter; returns how many there were."""
    with _connect(broker_url) as conn:
        channel = conn.channel()
        queue = dead_queue()(channel)
        queue.declare()
        return int(queue.purge() or 0)


def dead_letter(channel, message, reason: str) -> None:
    """Move ``message`` to the dead-letter queue with a readable reason, then ack it.

    A plain reject would dead-letter it too, but AMQP cannot attach a reason to a reject.
    """
    headers = dict(message.headers or {})
    headers["sonic-reason"] = reason
    headers["sonic-origin-queue"] = message.delivery_info.get("routing_key")
    channel.basic_publish(
        channel.prepare_message(
            message.body,
            priority=message.properties.get("priority") or 0,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            headers=headers,
            properties={"delivery_mode": 2},
        ),
        exchange=DEAD_EXCHANGE.name,
        routing_key=DEAD_QUEUE_NAME,
    )
    message.ack()
