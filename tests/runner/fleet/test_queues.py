"""The broker topology on a real RabbitMQ: pools, priorities, durability, dead letters."""

from __future__ import annotations

import pytest
from comfyui_sonic.runner.fleet import dlq
from comfyui_sonic.runner.fleet.queues import (
    JobMessage,
    MessageError,
    PoolError,
    declare_topology,
    make_app,
    parse_job_message,
    parse_pools,
    pool_for,
    pool_queue,
    pools_for_host,
    publish_job,
)
from kombu import Connection


def _take(channel, pool: int) -> list:
    """Every message of a pool queue, unacknowledged, in the order the broker delivers them."""
    queue = pool_queue(pool)(channel)
    out = []
    while (message := queue.get(no_ack=False)) is not None:
        out.append(message)
    return out


def _drain(url: str, pool: int) -> list:
    with Connection(url) as conn:
        messages = _take(conn.channel(), pool)
        for message in messages:
            message.ack()
    return messages


def _job_ids(messages) -> list[str]:
    return [m.decode()[1]["job_id"] for m in messages]


def test_jobs_go_to_the_smallest_pool_that_serves_them():
    assert pool_for(None) == 512
    assert pool_for(384) == 512
    assert pool_for(768) == 768
    assert pool_for(1000) == 1024
    with pytest.raises(PoolError, match="above the largest pool 1024"):
        pool_for(2048)
    assert pools_for_host(768) == (512, 768)
    assert pools_for_host(None) == (512, 768, 1024)
    assert parse_pools("1024, 512") == (512, 1024)
    with pytest.raises(PoolError, match="--pools"):
        parse_pools("big")


def test_inside_a_pool_p0_comes_before_p1_before_p2(broker_url):
    app = make_app(broker_url)
    declare_topology(broker_url)
    for job_id, priority in [("late", 2), ("normal-1", 1), ("urgent", 0), ("normal-2", 1)]:
        publish_job(app, JobMessage(job_id), pool=512, priority=priority)
    assert _job_ids(_drain(broker_url, 512)) == ["urgent", "normal-1", "normal-2", "late"]


def test_messages_are_persistent_and_survive_a_broker_restart(rabbitmq, broker_url):
    app = make_app(broker_url)
    declare_topology(broker_url)
    publish_job(app, JobMessage("kept", batch="b"), pool=768, priority=1)
    rabbitmq.restart()
    (message,) = _drain(broker_url, 768)
    assert message.properties["delivery_mode"] == 2
    assert parse_job_message(message.decode()[1]) == JobMessage("kept", batch="b")


def test_unknown_schema_versions_are_refused_with_a_reason():
    with pytest.raises(MessageError, match="schema version 7"):
        parse_job_message({"v": 7, "job_id": "x"})
    with pytest.raises(MessageError, match="not JSON"):
        parse_job_message(b"\x00garbage")
    with pytest.raises(MessageError, match="no job_id"):
        parse_job_message({"v": 1})


def test_dead_letters_can_be_listed_retried_and_purged(broker_url):
    app = make_app(broker_url)
    declare_topology(broker_url)
    publish_job(app, JobMessage("bad-version"), pool=1024, priority=0)
    publish_job(app, JobMessage("rejected"), pool=1024, priority=2)
    with Connection(broker_url) as conn:
        channel = conn.channel()
        first, second = _take(channel, 1024)
        dlq.dead_letter(channel, first, "message schema version 9 is not 1")
        second.reject(requeue=False)  # a plain reject: RabbitMQ's dead-letter exchange takes it

    listed = dlq.list_dead(broker_url)
    assert [(d.job_id, d.queue) for d in listed] == [
        ("bad-version", "sonic.pool.1024"),
        ("rejected", "sonic.pool.1024"),
    ]
    assert listed[0].reason == "message schema version 9 is not 1"
    assert listed[1].reason == "rejected"
    assert len(dlq.list_dead(broker_url)) == 2  # listing took nothing away

    assert dlq.retry_dead(broker_url) == 2
    assert dlq.list_dead(broker_url) == []
    assert sorted(_job_ids(_drain(broker_url, 1024))) == ["bad-version", "rejected"]

    publish_job(app, JobMessage("gone"), pool=512, priority=1)
    with Connection(broker_url) as conn:
        (message,) = _take(conn.channel(), 512)
        message.reject(requeue=False)
    assert dlq.purge_dead(broker_url) == 1
    assert dlq.list_dead(broker_url) == []


def test_the_dlq_command_lists_and_purges(broker_url, capsys):
    from comfyui_sonic.runner.cli import main

    app = make_app(broker_url)
    declare_topology(broker_url)
    publish_job(app, JobMessage("dead-one"), pool=512, priority=1)
    with Connection(broker_url) as conn:
        (message,) = _take(conn.channel(), 512)
        message.reject(requeue=False)
    assert main(["dlq", "list", "--broker", broker_url]) == 0
    assert "dead-one\tsonic.pool.512\trejected" in capsys.readouterr().out
    assert main(["dlq", "purge", "--broker", broker_url]) == 0
    assert "purged 1" in capsys.readouterr().out


def test_an_unreachable_broker_is_one_line_and_exit_2(capsys):
    from comfyui_sonic.runner.cli import main

    assert main(["dlq", "list", "--broker", "amqp://guest:secretpw@127.0.0.1:9//"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sonic-runner: error: broker amqp://") and "127.0.0.1:9// is unreachable" in err
    assert "check --broker" in err and "secretpw" not in err and "\n" not in err
