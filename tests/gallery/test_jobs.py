from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from gallery import jobs
from gallery.models import Job

pytestmark = pytest.mark.django_db

CALLS: list[dict] = []
FAILURES: list[tuple[dict, str]] = []


@jobs.job("test_ok")
def _ok(*, n: int) -> None:
    CALLS.append({"n": n})


@jobs.job("test_flaky", on_failure=lambda payload, error: FAILURES.append((payload, error)))
def _flaky(*, fail_times: int, key: str) -> None:
    CALLS.append({"key": key})
    if sum(1 for c in CALLS if c.get("key") == key) <= fail_times:
        raise RuntimeError(f"boom {key}")


@pytest.fixture(autouse=True)
def _reset(settings):
    settings.JOBS_MODE = "queue"
    CALLS.clear()
    FAILURES.clear()


def run_due(queues=("default",)) -> int:
    count = 0
    while (row := jobs.claim(queues=list(queues), worker="test")) is not None:
        jobs.execute(row)
        count += 1
    return count


def test_enqueue_claim_execute():
    jobs.enqueue("test_ok", {"n": 1})
    assert run_due() == 1
    assert CALLS == [{"n": 1}]
    assert Job.objects.get().state == Job.State.DONE


def test_retry_with_backoff_then_success(settings):
    settings.JOB_RETRY_BASE_SECONDS = 60
    jobs.enqueue("test_flaky", {"fail_times": 1, "key": "a"})
    assert run_due() == 1
    row = Job.objects.get()
    assert row.state == Job.State.QUEUED and row.attempts == 1 and "boom a" in row.last_error
    assert row.run_after > timezone.now() + timedelta(seconds=50)
    assert run_due() == 0  # not due yet
    Job.objects.update(run_after=timezone.now())
    assert run_due() == 1
    assert Job.objects.get().state == Job.State.DONE


def test_last_attempt_fails_and_calls_hook(settings):
    settings.JOB_RETRY_BASE_SECONDS = 0
    settings.JOB_MAX_ATTEMPTS = 2
    jobs.enqueue("test_flaky", {"fail_times": 5, "key": "b"})
    run_due()
    row = Job.objects.get()
    assert row.state == Job.State.FAILED and row.attempts == 2
    assert FAILURES and FAILURES[0][0] == {"fail_times": 5, "key": "b"} and "boom b" in FAILURES[0][1]


def test_expired_lease_is_claimed_again():
    jobs.enqueue("test_ok", {"n": 2})
    row = jobs.claim(queues=["default"], worker="dead-worker")
    assert row is not None
    assert jobs.claim(queues=["default"], worker="other") is None  # leased
    Job.objects.filter(pk=row.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    again = jobs.claim(queues=["default"], worker="other")
    assert again is not None and again.pk == row.pk and again.attempts == 2


def test_lost_on_last_attempt_becomes_failed(settings):
    settings.JOB_MAX_ATTEMPTS = 1
    jobs.enqueue("test_flaky", {"fail_times": 0, "key": "c"})
    row = jobs.claim(queues=["default"], worker="dead-worker")
    Job.objects.filter(pk=row.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert jobs.claim(queues=["default"], worker="other") is None
    failed = Job.objects.get(pk=row.pk)
    assert failed.state == Job.State.FAILED and "lease expired" in failed.last_error
    assert FAILURES and "lease expired" in FAILURES[0][1]


def test_due_sees_exactly_what_a_claim_would_take(settings):
    settings.JOB_RETRY_BASE_SECONDS = 60
    assert not jobs.due(queues=["default"])
    jobs.enqueue("test_ok", {"n": 3}, queue="video")
    assert not jobs.due(queues=["default"]) and jobs.due(queues=["default", "video"])
    jobs.enqueue("test_ok", {"n": 4}, delay_seconds=60)
    assert not jobs.due(queues=["default"])  # not yet
    Job.objects.filter(queue="default").update(run_after=timezone.now())
    assert jobs.due(queues=["default"])
    row = jobs.claim(queues=["default"], worker="dead-worker")
    assert not jobs.due(queues=["default"])  # leased
    Job.objects.filter(pk=row.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert jobs.due(queues=["default"])  # its worker died: claimable again


def test_video_jobs_take_at_most_half_the_threads():
    assert jobs.slot_queues(1) == [["default", "video"]]
    assert jobs.slot_queues(2) == [["default"], ["default", "video"]]
    assert jobs.slot_queues(4) == [["default"], ["default"], ["default", "video"], ["default", "video"]]


def test_queue_preference_default_before_video():
    jobs.enqueue("test_ok", {"n": 10}, queue="video")
    jobs.enqueue("test_ok", {"n": 11}, queue="default")
    first = jobs.claim(queues=["default", "video"], worker="w")
    assert first.payload == {"n": 11}


def test_unknown_job_name_fails_cleanly():
    jobs.enqueue("no_such_job", {})
    run_due()
    row = Job.objects.get()
    assert row.state == Job.State.FAILED and "no handler" in row.last_error
