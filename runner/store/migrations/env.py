"""Alembic environment, run by ``runner/store/migrate.py`` (no alembic.ini needed).

The connection and the target metadata come in through ``config.attributes`` because
Alembic loads this file by path, outside the package, so it cannot import the schema itself.
"""

from alembic import context

_attrs = context.config.attributes
context.configure(connection=_attrs["connection"], target_metadata=_attrs["metadata"], render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
