"""Runner fixtures: `store_url` runs a test on SQLite (the single-box case) and on a real PostgreSQL."""

from __future__ import annotations

import pytest

from tests.services.postgres import start_postgres


@pytest.fixture(scope="session")
def postgres_server():
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    server = request.getfixturevalue("postgres_server")
    from sqlalchemy import create_engine, text

    # A fresh schema per test: drop everything the previous test made.
    engine = create_engine(server.url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return server.url
