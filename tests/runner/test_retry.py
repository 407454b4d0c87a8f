"""The retry policy: which failures retry, backoff with full jitter, OOM lowers the tier."""

from __future__ import annotations

import random

from comfyui_sonic.runner.retry import RetryPolicy


def decide(policy, attempts=1, kind="http_5xx", retryable=True, resolution=768):
    return policy.decide(
        attempts=attempts,
        kind=kind,
        retryable=retryable,
        message="boom",
        resolution=resolution,
        rng=random.Random(1),
    )


def test_transient_errors_retry_until_attempts_run_out():
    policy = RetryPolicy(max_attempts=3)
    for kind in ("connection", "http_5xx", "socket", "restart", "timeout", "execution"):
        assert decide(policy, 1, kind).retry
        assert decide(policy, 2, kind).retry
        last = decide(policy, 3, kind)
        assert not last.retry and "gave up after 3 attempts" in last.message and "boom" in last.message


def test_input_and_validation_errors_are_final_with_the_host_message():
    policy = RetryPolicy()
    for kind in ("input", "validation", "upload_too_large"):
        d = decide(policy, 1, kind, retryable=False)
        assert not d.retry and d.message == "boom"


def test_kinds_outside_the_policy_do_not_retry():
    policy = RetryPolicy(retry_kinds=frozenset({"http_5xx"}))
    assert not decide(policy, 1, "socket").retry


def test_backoff_is_full_jitter_bounded_by_cap():
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=5.0)
    rng = random.Random(7)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
        samples = [policy.backoff(failures, rng) for _ in range(200)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # it really spreads over the whole range


def test_oom_lowers_the_resolution_tier_and_notes_it():
    policy = RetryPolicy()
    d = decide(policy, 1, "oom", resolution=1024)
    assert d.retry and d.resolution == 768 and "768" in d.note and "1024" in d.note
    assert decide(policy, 2, "oom", resolution=512).resolution == 384


def test_oom_at_the_lowest_tier_is_dead_with_a_message():
    d = decide(RetryPolicy(), 1, "oom", resolution=384)
    assert not d.retry and "no lower tier" in d.message


def test_oom_without_a_known_resolution_is_dead():
    d = decide(RetryPolicy(), 1, "oom", resolution=None)
    assert not d.retry and "min_resolution" in d.message
