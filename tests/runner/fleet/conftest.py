"""Fleet tests run against a private, real RabbitMQ node and PostgreSQL server (one each per session)."""

from __future__ import annotations

import pytest

from tests.services.rabbitmq import start_rabbitmq


@pytest.fixture(scope="session")
def rabbitmq():
    server = start_rabbitmq()
    yield server
    server.stop()


@pytest.fixture
def broker_url(rabbitmq):
    """The broker with every sonic queue emptied, so tests do not see each other's messages."""
    from comfyui_sonic.runner.fleet.queues import DEFAULT_POOLS, DELAY_STEPS, all_queues, delay_queue
    from kombu import Connection

    with Connection(rabbitmq.url) as conn:
        channel = conn.channel()
        for queue in all_queues(DEFAULT_POOLS):
            bound = queue(channel)
            bound.declare()
            bound.purge()
        for pool in DEFAULT_POOLS:
            for step in DELAY_STEPS:
                delay_queue(pool, step)(channel).delete()
        channel.close()
    return rabbitmq.url


@pytest.fixture
def pg_url(postgres_server):
    """A PostgreSQL database with nothing in it (the previous test's tables dropped)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_server.url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return postgres_server.url


@pytest.fixture
def fleet(tmp_path, broker_url, pg_url):
    from .harness import Fleet

    fleet = Fleet(tmp_path, broker_url, pg_url)
    yield fleet
    fleet.close()
