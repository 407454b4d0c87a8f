"""The shared job store: jobs, attempts and events in a database every process can reach.

The local journal (``runner/journal.py``) serves one runner on one machine. Fleet mode has
many workers and submitters on many machines, so the same records live in PostgreSQL
(SQLite on one box) through SQLAlchemy, with one schema for both and Alembic migrations.

``JobStore`` keeps the journal's interface and guarantees (every change committed before
it takes effect, the job state machine of ``runner/jobs.py`` enforced) and adds what
several writers need: every state change is a compare-and-set on the row, so two
processes can never both move a job, and an attempt number can be started only once.
"""

from .job_store import AttemptTaken, JobStore, StaleJob, StoreError, attempt_prompt_id

__all__ = ["AttemptTaken", "JobStore", "StaleJob", "StoreError", "attempt_prompt_id"]
