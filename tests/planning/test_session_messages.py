"""Issue 21: progress messages, warnings and errors, retries, and the async twins of the session calls."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import connections

from accounts.validation import MAX_ERROR_LENGTH
from planning.models import AppendOnlyError, PlanningSession, ProgramIncrement, SessionMessage
from tests.factories import make_planning_session
from tests.reliability.concurrency import WRITERS, assert_no_errors, run_together

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
URL = "https://acme.atlassian.net/wiki/spaces/PLAN/pages/42"


def messages(session: PlanningSession) -> list[tuple]:
    """The messages, newest first: (level, message, code, details, fatal, attempt, created_at)."""
    return list(
        SessionMessage.objects.filter(planning_session=session)
        .newest_first()
        .values_list("level", "message", "code", "details", "fatal", "attempt", "created_at")
    )


@pytest.mark.django_db
class TestProgressMessage:
    def test_set_progress_stores_percent_and_message(self):
        session = make_planning_session(status="processing")
        session.set_progress(40, "Creating stories in Linear")
        row = PlanningSession.objects.get(pk=session.pk)
        assert (row.progress, row.progress_message) == (40, "Creating stories in Linear")
        assert (session.progress, session.progress_message) == (40, "Creating stories in Linear")

    def test_the_same_percent_with_a_new_message_replaces_it_and_no_message_clears_it(self):
        session = make_planning_session(status="processing")
        session.set_progress(40, "Parsing")
        session.set_progress(40, "Still parsing")
        assert PlanningSession.objects.get(pk=session.pk).progress_message == "Still parsing"
        session.set_progress(50)
        assert PlanningSession.objects.values_list("progress", "progress_message").get(pk=session.pk) == (
            50,
            "",
        )

    def test_backwards_is_refused_and_keeps_the_message(self):
        session = make_planning_session(status="processing")
        session.set_progress(60, "Linking")
        with pytest.raises(ValidationError, match="is at 60%: progress cannot go back to 30%"):
            session.set_progress(30, "Older news")
        assert PlanningSession.objects.values_list("progress", "progress_message").get(pk=session.pk) == (
            60,
            "Linking",
        )

    def test_only_while_processing(self):
        session = make_planning_session()
        with pytest.raises(ValidationError, match="progress can only be set while 'processing'"):
            session.set_progress(10, "x")
        assert PlanningSession.objects.values_list("progress", "progress_message").get(pk=session.pk) == (
            0,
            "",
        )

    @pytest.mark.parametrize(
        ("message", "error", "text"),
        [
            (5, ValueError, "message must be a string, not int"),
            ("a\x00b", ValidationError, "message must not contain NUL"),
            ("m" * 1001, ValidationError, "message is 1001 characters long; at most 1000"),
        ],
    )
    def test_bad_message_is_refused_before_writing(self, message, error, text):
        session = make_planning_session(status="processing")
        with pytest.raises(error, match=text):
            session.set_progress(10, message)
        assert PlanningSession.objects.get(pk=session.pk).progress == 0


@pytest.mark.django_db
class TestWarningsAndErrors:
    def test_warning_is_appended_with_code_details_time_and_attempt_and_status_stays(self):
        session = make_planning_session(status="processing")
        entry = session.add_warning(
            "Story has no estimate", code="missing_estimate", details={"story": "story-1"}, at=T0
        )
        assert isinstance(entry, SessionMessage) and entry.pk is not None
        assert messages(session) == [
            ("warning", "Story has no estimate", "missing_estimate", {"story": "story-1"}, False, 1, T0),
        ]
        assert PlanningSession.objects.get(pk=session.pk).status == "processing"

    def test_non_fatal_error_does_not_fail_the_session(self):
        session = make_planning_session(status="processing")
        session.add_error("Label 'x' not found", code="label_missing", fatal=False, at=T0)
        row = PlanningSession.objects.get(pk=session.pk)
        assert (row.status, row.error) == ("processing", "")
        assert messages(session) == [("error", "Label 'x' not found", "label_missing", None, False, 1, T0)]

    def test_fatal_error_fails_the_session_like_mark_failed(self):
        session = make_planning_session(status="processing")
        session.add_error("Linear API: 401", code="linear_auth", details={"status": 401}, at=T0)
        row = PlanningSession.objects.get(pk=session.pk)
        assert (row.status, row.error) == ("failed", "Linear API: 401")
        assert (session.status, session.error) == ("failed", "Linear API: 401")
        assert messages(session) == [
            ("error", "Linear API: 401", "linear_auth", {"status": 401}, True, 1, T0)
        ]

    def test_mark_failed_also_lists_its_error(self):
        session = make_planning_session(status="processing")
        session.mark_failed("Confluence page not found")
        assert [m[:6] for m in messages(session)] == [
            ("error", "Confluence page not found", "", None, True, 1),
        ]

    def test_fatal_error_of_a_finished_session_is_refused_and_writes_nothing(self):
        session = make_planning_session(status="completed", progress=100)
        with pytest.raises(ValidationError, match="cannot move from 'completed' to 'failed'"):
            session.add_error("late failure")
        assert messages(session) == []
        assert PlanningSession.objects.get(pk=session.pk).status == "completed"

    def test_listing_is_newest_first_and_filters_by_level_and_attempt(self):
        session = make_planning_session(status="processing")
        session.add_warning("w1", at=T0)
        session.add_error("e1", fatal=False, at=T0 + dt.timedelta(minutes=1))
        session.add_warning("w2", at=T0 + dt.timedelta(minutes=2))
        listed = session.messages.newest_first()
        assert [m.message for m in listed] == ["w2", "e1", "w1"]
        assert [m.message for m in listed.warnings()] == ["w2", "w1"]
        assert [m.message for m in listed.errors()] == ["e1"]
        assert [m.message for m in listed.for_attempt(1)] == ["w2", "e1", "w1"]
        assert list(listed.for_attempt(2)) == []

    def test_the_cap_is_max_error_length(self):
        session = make_planning_session(status="processing")
        session.add_warning("w" * MAX_ERROR_LENGTH)
        with pytest.raises(ValidationError, match=f"message is {MAX_ERROR_LENGTH + 1} characters long"):
            session.add_warning("w" * (MAX_ERROR_LENGTH + 1))
        with pytest.raises(ValidationError, match=f"error is {MAX_ERROR_LENGTH + 1} characters long"):
            session.add_error("e" * (MAX_ERROR_LENGTH + 1))
        with pytest.raises(ValidationError, match=f"error is {MAX_ERROR_LENGTH + 1} characters long"):
            session.mark_failed("e" * (MAX_ERROR_LENGTH + 1))
        assert SessionMessage.objects.count() == 1
        assert PlanningSession.objects.get(pk=session.pk).status == "processing"

    @pytest.mark.parametrize(
        ("kwargs", "error", "text"),
        [
            ({"message": ""}, ValidationError, "message must not be empty"),
            ({"message": 3}, ValueError, "message must be a string, not int"),
            ({"code": "c" * 101}, ValidationError, "code is 101 characters long; at most 100"),
            ({"code": None}, None, None),
            ({"details": {1, 2}}, ValidationError, "details is not valid JSON"),
            ({"details": float("nan")}, ValidationError, "details is not valid JSON"),
            ({"details": {"k": "a\x00"}}, ValidationError, "details must not contain NUL"),
            (
                {"details": "d" * MAX_ERROR_LENGTH},
                ValidationError,
                f"details is {MAX_ERROR_LENGTH + 2} characters long as JSON",
            ),
            ({"at": dt.datetime(2026, 3, 2, 9, 0)}, ValidationError, "at must be timezone-aware"),
        ],
    )
    def test_bad_arguments_are_refused_before_writing(self, kwargs, error, text):
        session = make_planning_session(status="processing")
        arguments = {"message": "m", **kwargs}
        if error is None:
            session.add_warning(**arguments)
            assert messages(session)[0][2] == ""
            return
        with pytest.raises(error, match=text):
            session.add_warning(**arguments)
        assert messages(session) == []

    def test_fatal_must_be_a_bool(self):
        session = make_planning_session(status="processing")
        with pytest.raises(ValueError, match="fatal must be a bool, not str"):
            session.add_error("x", fatal="no")
        assert messages(session) == []

    def test_messages_are_append_only(self):
        session = make_planning_session(status="processing")
        entry = session.add_warning("keep me", at=T0)
        entry.message = "changed"
        with pytest.raises(AppendOnlyError):
            entry.save()
        with pytest.raises(AppendOnlyError):
            entry.delete()
        with pytest.raises(AppendOnlyError):
            SessionMessage.objects.filter(pk=entry.pk).update(message="changed")
        with pytest.raises(AppendOnlyError):
            SessionMessage.objects.all().delete()
        assert messages(session) == [("warning", "keep me", "", None, False, 1, T0)]

    def test_deleting_the_session_deletes_its_messages(self):
        session = make_planning_session(status="processing")
        session.add_warning("w")
        session.delete()
        assert SessionMessage.objects.count() == 0


@pytest.mark.django_db
class TestRetry:
    def test_retry_makes_a_failed_session_pending_again_with_the_next_attempt(self):
        session = make_planning_session(status="processing")
        session.set_progress(70, "Creating issues")
        session.add_warning("slow API", at=T0)
        session.add_error("Linear API: 500", code="linear_5xx", at=T0 + dt.timedelta(seconds=1))
        session.retry()
        row = PlanningSession.objects.get(pk=session.pk)
        assert (row.status, row.attempt, row.progress, row.progress_message, row.error) == (
            "pending",
            2,
            0,
            "",
            "",
        )
        assert (session.status, session.attempt, session.progress, session.error) == ("pending", 2, 0, "")
        # The first attempt's messages stay, marked with their attempt.
        assert [(m[1], m[5]) for m in messages(session)] == [("Linear API: 500", 1), ("slow API", 1)]

    def test_messages_after_a_retry_belong_to_the_new_attempt(self):
        session = make_planning_session(status="processing")
        session.mark_failed("first")
        session.retry()
        session.mark_in_progress()
        session.add_warning("second-run warning", at=T0)
        session.add_error("second", at=T0 + dt.timedelta(seconds=1))
        session.retry()
        assert PlanningSession.objects.get(pk=session.pk).attempt == 3
        assert [(m.message, m.attempt) for m in session.messages.for_attempt(2)] == [
            ("second", 2),
            ("second-run warning", 2),
        ]
        assert [m.message for m in session.messages.for_attempt(1)] == ["first"]

    @pytest.mark.parametrize("status", ["pending", "processing", "completed"])
    def test_only_a_failed_session_can_be_retried(self, status):
        session = make_planning_session(status=status, progress=100 if status == "completed" else 0)
        with pytest.raises(ValidationError, match=f"cannot move from '{status}' to 'pending'"):
            session.retry()
        row = PlanningSession.objects.get(pk=session.pk)
        assert (row.status, row.attempt) == (status, 1)

    def test_a_stale_instance_cannot_retry_twice(self):
        session = make_planning_session(status="failed")
        other = PlanningSession.objects.get(pk=session.pk)
        session.retry()
        with pytest.raises(ValidationError, match="cannot move from 'pending' to 'pending'"):
            other.retry()
        assert PlanningSession.objects.get(pk=session.pk).attempt == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_retries_make_exactly_one_new_attempt():
    session = make_planning_session(status="failed", error="boom")
    instances = [PlanningSession.objects.get(pk=session.pk) for _ in range(WRITERS)]

    def retry(n: int) -> str:
        try:
            instances[n].retry()
        except ValidationError:
            return "refused"
        return "won"

    outcomes = run_together(retry)
    assert_no_errors(outcomes)
    assert sorted(o.result for o in outcomes) == ["refused"] * (WRITERS - 1) + ["won"]
    row = PlanningSession.objects.get(pk=session.pk)
    assert (row.status, row.attempt, row.error) == ("pending", 2, "")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_fatal_errors_fail_the_session_once_and_log_only_the_winner():
    session = make_planning_session(status="processing")

    def fail(n: int) -> bool:
        try:
            PlanningSession.objects.get(pk=session.pk).add_error(f"worker {n}", code=f"w{n}")
        except ValidationError:
            return False
        return True

    outcomes = run_together(fail)
    assert_no_errors(outcomes)
    winners = [n for n, o in enumerate(outcomes) if o.result]
    assert len(winners) == 1
    row = PlanningSession.objects.get(pk=session.pk)
    assert (row.status, row.error) == ("failed", f"worker {winners[0]}")
    assert list(SessionMessage.objects.values_list("message", "fatal")) == [(f"worker {winners[0]}", True)]


@pytest.mark.django_db(transaction=True)
def test_async_twins_of_the_session_calls(clock):
    # The messages are listed by time: those recorded at "now" come after the ones given at T0+n s.
    clock.move_to(T0 + dt.timedelta(hours=1))

    async def agent() -> tuple:
        session = await PlanningSession.objects.astart(
            "org-async", confluence_page_url=URL, planning_title="Async planning"
        )
        await session.amark_in_progress()
        await session.aset_progress(30, "Parsing the page")
        warning = await session.aadd_warning("no estimate", code="missing_estimate", at=T0)
        await session.aadd_error("label missing", fatal=False, at=T0 + dt.timedelta(seconds=1))
        await session.aadd_error("Linear down", code="linear_5xx", at=T0 + dt.timedelta(seconds=2))
        await session.aretry()
        await session.amark_in_progress()
        await session.amark_failed("still down")
        await session.aretry()
        await session.amark_in_progress()
        await session.amark_completed()
        # The twins ran on asgiref's shared worker thread: close its connection, as a request's end does.
        await sync_to_async(connections.close_all)()
        return session, warning

    session, warning = asyncio.run(agent())
    row = PlanningSession.objects.get(pk=session.pk)
    assert (row.status, row.progress, row.attempt, row.organization.linear_id) == (
        "completed",
        100,
        3,
        "org-async",
    )
    assert warning.code == "missing_estimate"
    assert [(m.message, m.fatal, m.attempt) for m in row.messages.newest_first()][:3] == [
        ("still down", True, 2),
        ("Linear down", True, 1),
        ("label missing", False, 1),
    ]
    assert row.messages.count() == 4


def test_program_increment_queries_need_no_async_twin():
    # Its public methods return lazy QuerySets, which Django already iterates asynchronously
    # (``async for``, ``aget``, ``acount``); no twin is missing.
    assert hasattr(ProgramIncrement.objects.for_organization("x"), "aget")
