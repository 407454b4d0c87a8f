"""The shared job store keeps the journal's guarantees on SQLite and PostgreSQL, for many writers."""

from __future__ import annotations

import threading

import pytest
from comfyui_sonic.runner.jobs import InvalidTransition, JobRecord
from comfyui_sonic.runner.store import AttemptTaken, JobStore, StaleJob, StoreError, attempt_prompt_id


def _jobs(n: int) -> list[JobRecord]:
    return [JobRecord(job_id=f"job-{i}", row=i, priority=i % 3, spec={"image": f"{i}.jpg"}) for i in range(n)]


def test_jobs_round_trip_with_their_spec_and_meta(store_url):
    with JobStore(store_url) as store:
        assert store.add_jobs(_jobs(3), meta={"workflow": "w.json", "hosts": ["a", "b"]}, batch="b1") == 3
        assert [j.job_id for j in store.jobs()] == ["job-0", "job-1", "job-2"]
        assert store.job("job-2").spec == {"image": "2.jpg"}
        assert store.job("job-2").priority == 2
        assert store.meta() == {"workflow": "w.json", "hosts": ["a", "b"]}
        assert store.counts(batch="b1") == {"queued": 3}
        assert store.job("nope") is None


def test_publishing_the_same_jobs_again_adds_nothing(store_url):
    with JobStore(store_url) as store:
        assert store.add_jobs(_jobs(5), skip_existing=True) == 5
        assert store.add_jobs(_jobs(7), skip_existing=True) == 2
        assert len(store.jobs()) == 7


def test_a_full_attempt_is_recorded_before_it_takes_effect(store_url):
    with JobStore(store_url) as store:
        store.add_jobs(_jobs(1))
        job = store.job("job-0")
        store.transition(job, "uploading")
        pid = attempt_prompt_id(job.job_id, job.attempts + 1)
        store.start_attempt(job, "http://user:secret@gpu1:8188", pid, "client", 512)
        # Another process sees the prompt id before anything is POSTed.
        seen = JobStore(store_url).job("job-0")
        assert (seen.state, seen.prompt_id, seen.attempts, seen.host) == (
            "submitted",
            pid,
            1,
            "http://gpu1:8188",
        )
        store.transition(job, "running", attempt_state="running", started_at=1.0)
        store.transition(job, "fetching", attempt_state="fetching")
        store.transition(job, "done", attempt_state="done", outputs=["out/job-0.mp4"], finished_at=2.0)
        assert store.job("job-0").outputs == ["out/job-0.mp4"]
        (attempt,) = store.attempts("job-0")
        assert attempt["state"] == "done" and attempt["finished_at"] is not None
        assert store.counts_by_host() == {"http://gpu1:8188": {"done": 1}}


def test_forbidden_transitions_are_refused(store_url):
    with JobStore(store_url) as store:
        store.add_jobs(_jobs(1))
        job = store.job("job-0")
        with pytest.raises(InvalidTransition):
            store.transition(job, "done")
        assert store.job("job-0").state == "queued"


def test_two_writers_cannot_both_move_a_job(store_url):
    with JobStore(store_url) as store:
        store.add_jobs(_jobs(1))
        mine, theirs = store.job("job-0"), JobStore(store_url).job("job-0")
        store.transition(mine, "uploading")
        with pytest.raises(StaleJob):
            store.transition(theirs, "uploading")
        assert theirs.state == "queued"  # the loser's record is untouched; it re-reads


def test_an_attempt_number_starts_once_even_under_a_race(store_url):
    """What a redelivered broker message meets: the attempt is already there, follow it."""
    with JobStore(store_url) as store:
        store.add_jobs(_jobs(1))
        store.transition(store.job("job-0"), "uploading")
        results: list[str] = []
        barrier = threading.Barrier(4)

        def start(worker: int) -> None:
            other = JobStore(store_url)
            job = other.job("job-0")  # every worker read "uploading, attempt 0" ...
            barrier.wait()  # ... and now they all try to start attempt 1 at once
            try:
                other.start_attempt(job, f"http://gpu{worker}", attempt_prompt_id("job-0", 1), "c", None)
                results.append("started")
            except (AttemptTaken, StaleJob):
                results.append("taken")
            finally:
                other.close()

        threads = [threading.Thread(target=start, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["started", "taken", "taken", "taken"]
        assert len(store.attempts("job-0")) == 1


def test_prompt_ids_are_stable_per_job_and_attempt():
    assert attempt_prompt_id("a", 1) == attempt_prompt_id("a", 1)
    assert len({attempt_prompt_id("a", 1), attempt_prompt_id("a", 2), attempt_prompt_id("b", 1)}) == 3


def test_errors_are_redacted_before_they_are_stored(store_url):
    with JobStore(store_url, redact=lambda s: s.replace("tok123", "***")) as store:
        store.add_jobs(_jobs(1))
        job = store.job("job-0")
        store.transition(job, "dead", error="host said: bearer tok123 refused", error_kind="auth")
        assert store.job("job-0").error == "host said: bearer *** refused"


def test_events_are_read_in_order_after_the_last_seen_id(store_url):
    with JobStore(store_url) as store:
        store.add_jobs(_jobs(2))
        first = store.add_event("job-0", "progress", {"node": "Animate", "percent": 10})
        store.add_event("job-1", "state", {"state": "running"})
        store.add_event("job-0", "progress", {"node": "Animate", "percent": 60})
        assert [e["data"]["percent"] for e in store.events("job-0")] == [10, 60]
        assert [e["kind"] for e in store.events(after=first)] == ["state", "progress"]


def test_abandoned_attempts_and_attempt_counts(store_url):
    with JobStore(store_url) as store:
        store.add_jobs(_jobs(1))
        job = store.job("job-0")
        store.transition(job, "uploading")
        store.start_attempt(job, "http://gpu1", attempt_prompt_id("job-0", 1), "c", 768)
        store.transition(job, "failed", attempt_state="failed", error="OOM", error_kind="oom")
        store.set_attempt_state("job-0", 1, "abandoned")
        assert [a["prompt_id"] for a in store.abandoned_attempts()] == [attempt_prompt_id("job-0", 1)]
        assert store.attempt_counts("oom") == {"job-0": 1}
        assert store.attempt("job-0", 1)["resolution"] == 768


def test_the_migrated_schema_is_the_declared_one(store_url):
    """A model change without a migration fails here (Alembic's autogenerate finds the drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from comfyui_sonic.runner.store.schema import metadata
    from sqlalchemy import create_engine

    JobStore(store_url).close()
    engine = create_engine(store_url)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diffs == []


def test_an_unreachable_database_is_one_line():
    with pytest.raises(StoreError) as err:
        JobStore("postgresql+psycopg://sonic:pw@127.0.0.1:9/sonic")
    message = str(err.value)
    assert "unreachable" in message and "--db" in message and "pw" not in message
    assert "\n" not in message


def test_the_most_urgent_queued_job_comes_first_however_many_wait(store_url):
    with JobStore(store_url) as store:
        store.add_jobs([JobRecord(job_id=f"p2-{i:03d}", row=i, priority=2, spec={}) for i in range(250)])
        store.add_jobs([JobRecord(job_id="urgent", row=999, priority=0, spec={})])
        first = store.jobs(["queued"], limit=200, by_priority=True)
        assert first[0].job_id == "urgent" and first[1].job_id == "p2-000"


def test_a_keys_load_is_counted_in_one_query_up_to_each_limit(store_url):
    """What the API checks on every submission: recent and unfinished jobs, each capped at its limit."""
    with JobStore(store_url) as store:
        old = [JobRecord(job_id=f"old-{i}", row=i, priority=1, spec={}, created_at=100.0) for i in range(6)]
        new = [JobRecord(job_id=f"new-{i}", row=i, priority=1, spec={}, created_at=5000.0) for i in range(4)]
        store.add_jobs([*old, *new], owner="k1")
        store.add_jobs([JobRecord(job_id="other", row=0, priority=1, spec={}, created_at=5000.0)], owner="k2")
        for job in store.jobs(owner="k1")[:5]:  # five of the old ones end
            store.transition(job, "dead", error="x", finished_at=1.0)
        assert store.owner_load("k1", 4000.0, recent_cap=100, open_cap=100) == (4, 5)
        assert store.owner_load("k1", 0.0, recent_cap=3, open_cap=2) == (3, 2)  # stops at the caps
        assert store.owner_load("k3", 0.0, recent_cap=10, open_cap=10) == (0, 0)


def test_new_jobs_can_carry_their_first_state_event_in_the_same_commit(store_url):
    with JobStore(store_url) as store:
        assert store.add_jobs(_jobs(2), owner="k1", state_events=True) == 2
        assert store.add_jobs(_jobs(3), skip_existing=True, state_events=True) == 1  # only job-2 is new
        events = store.events()
        assert [(e["job_id"], e["kind"], e["data"]) for e in events] == [
            ("job-0", "state", {"state": "queued"}),
            ("job-1", "state", {"state": "queued"}),
            ("job-2", "state", {"state": "queued"}),
        ]


def test_a_pooled_connection_killed_while_idle_is_replaced_before_use(postgres_server, monkeypatch):
    """No ping on every checkout (a round trip per query), but one for a connection that sat idle.

    PostgreSQL only: SQLite has no server connection to lose."""
    from comfyui_sonic.runner.store import job_store
    from sqlalchemy import create_engine, text

    store_url = postgres_server.url
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    with JobStore(store_url) as store:
        store.add_jobs(_jobs(1))
        assert store.job("job-0") is not None  # the pool now holds a connection
        killer = create_engine(store_url)
        with killer.begin() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        killer.dispose()
        monkeypatch.setattr(job_store, "PING_AFTER_IDLE_S", 0.0)  # every pooled connection counts as idle
        assert store.job("job-0").job_id == "job-0"
