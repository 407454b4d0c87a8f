"""Fleet tests run against a private, real RabbitMQ node (one per test session)."""

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
    from comfyui_sonic.runner.fleet.queues import DEFAULT_POOLS, all_queues
    from kombu import Connection

    with Connection(rabbitmq.url) as conn:
        channel = conn.channel()
        for queue in all_queues(DEFAULT_POOLS):
            bound = queue(channel)
            bound.declare()
            bound.purge()
        channel.close()
    return rabbitmq.url
