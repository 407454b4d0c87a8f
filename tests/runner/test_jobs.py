"""The job model: states, allowed transitions, priorities."""

from __future__ import annotations

import pytest
from comfyui_sonic.runner import jobs as J
from comfyui_sonic.runner.jobs import InvalidTransition, JobRecord, check_transition, parse_priority


def test_happy_path_is_allowed():
    path = [J.QUEUED, J.UPLOADING, J.SUBMITTED, J.RUNNING, J.FETCHING, J.DONE]
    for old, new in zip(path, path[1:], strict=False):
        check_transition("j", old, new)


def test_retry_path_goes_through_failed_back_to_queued():
    for old, new in [(J.RUNNING, J.FAILED), (J.FAILED, J.QUEUED), (J.QUEUED, J.UPLOADING)]:
        check_transition("j", old, new)


@pytest.mark.parametrize(
    "old,new", [(J.DONE, J.RUNNING), (J.DEAD, J.QUEUED), (J.QUEUED, J.DONE), (J.QUEUED, J.SUBMITTED)]
)
def test_impossible_changes_raise(old, new):
    with pytest.raises(InvalidTransition, match=f"{old} -> {new}"):
        check_transition("job7", old, new)


def test_final_states_have_no_way_out_and_every_state_can_die():
    assert not J.TRANSITIONS[J.DONE] and not J.TRANSITIONS[J.DEAD]
    for state in J.STATES:
        if state not in J.FINAL_STATES:
            assert J.DEAD in J.TRANSITIONS[state]


def test_priorities():
    assert [parse_priority(v) for v in ("P0", "p2", "", None, 1, "2")] == [0, 2, 1, 1, 1, 2]
    with pytest.raises(ValueError, match="P0, P1, P2"):
        parse_priority("urgent")


def test_record_defaults():
    job = JobRecord(job_id="a", row=1)
    assert job.state == J.QUEUED and job.attempts == 0 and job.outputs == [] and not job.final
    assert job.to_dict()["job_id"] == "a"
