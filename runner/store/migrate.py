"""Bring a database to the newest schema with Alembic, programmatically.

Why programmatic: workers, API replicas and ``batch --db`` all call ``upgrade`` on start,
so nobody has to run a separate tool or ship an alembic.ini; Alembic's version table and
a transactional DDL (PostgreSQL) or batch mode (SQLite) make concurrent starts safe enough
that the loser of a race sees the tables already there.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from .schema import metadata

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    config.attributes["metadata"] = metadata
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def known_revisions() -> set[str]:
    """Every revision this code can upgrade from."""
    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None for an empty database)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> None:
    """Apply every migration the database lacks (a no-op when it is current)."""
    command.upgrade(_config(connection), "head")
