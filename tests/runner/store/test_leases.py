"""Fleet workers hold jobs with leases in the job store: one holder at a time, a dead one replaced."""

from __future__ import annotations

import time

import pytest
from comfyui_sonic.runner.jobs import JobRecord
from comfyui_sonic.runner.store import JobStore, StaleJob


def _store(url: str, n: int = 1) -> JobStore:
    store = JobStore(url, record_events=True)
    store.add_jobs([JobRecord(job_id=f"job-{i}", row=i, spec={}) for i in range(n)], batch="b")
    return store


def test_of_two_workers_that_got_the_same_job_only_one_takes_it(store_url):
    with _store(store_url) as store:
        first, second = store.job("job-0"), store.job("job-0")
        store.take(first, "w1", lease_s=30)
        with pytest.raises(StaleJob):
            store.take(second, "w2", lease_s=30)
        assert store.holder("job-0")[0] == "w1"
        assert store.job("job-0").state == "uploading"


def test_a_live_lease_keeps_the_job_and_an_expired_one_lets_another_worker_take_over(store_url):
    with _store(store_url) as store:
        job = store.job("job-0")
        store.take(job, "w1", lease_s=30)
        assert not store.take_over(store.job("job-0"), "w2", lease_s=30)
        assert store.take_over(store.job("job-0"), "w1", lease_s=30)  # (its own: a redelivery to it)
        store.release("job-0", "w1")  # w1 hands it back (SIGTERM) or stops renewing
        assert store.take_over(store.job("job-0"), "w2", lease_s=30)
        assert store.holder("job-0")[0] == "w2"
        assert store.renew("w1", ["job-0"], 30) == 0 and store.renew("w2", ["job-0"], 30) == 1


def test_one_reaper_republishes_a_dead_holders_job_and_its_taker_may_take_it_at_once(store_url):
    with _store(store_url) as store:
        store.take(store.job("job-0"), "dead-worker", lease_s=0.01)
        time.sleep(0.05)
        ((stale, batch),) = store.expired_leases()
        assert stale.job_id == "job-0" and batch == "b"
        assert store.mark_reaped(stale, time.time(), hold_s=60)
        assert not store.mark_reaped(store.job("job-0"), time.time(), hold_s=60)  # the other reapers
        assert store.expired_leases() == []
        assert store.take_over(store.job("job-0"), "w2", lease_s=30)


def test_jobs_never_published_are_found_for_publishing(store_url):
    with _store(store_url, 3) as store:
        store.mark_published(["job-1"])
        assert [j.job_id for j in store.unpublished("b")] == ["job-0", "job-2"]
        assert [j.job_id for j in store.never_published(time.time() + 1)] == ["job-0", "job-2"]
        assert store.never_published(time.time() - 3600) == []
        assert store.is_published("job-1") and not store.is_published("job-0")


def test_each_change_records_its_state_event_in_the_same_transaction(store_url):
    with _store(store_url) as store:
        job = store.job("job-0")
        store.take(job, "w1", lease_s=30, host="http://gpu1:8188")
        store.transition(job, "queued")
        events = [(e["kind"], e["data"]["state"], e["data"]["host"]) for e in store.events(prefix="job-")]
        assert events == [("state", "uploading", "http://gpu1:8188"), ("state", "queued", "http://gpu1:8188")]
        assert store.cancel_requested(["job-0"]) == set()
        store.request_cancel("job-0")
        assert store.cancel_requested(["job-0", "job-9"]) == {"job-0"}
