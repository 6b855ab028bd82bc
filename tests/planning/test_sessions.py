"""PlanningSession.objects.start / for_organization and the status transitions."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import Organization
from planning.models import PlanningSession, ProgramIncrement
from tests.factories import make_organization, make_planning_session, make_program_increment
from tests.reliability.concurrency import WRITERS, assert_no_errors, run_together

URL = "https://acme.atlassian.net/wiki/spaces/PLAN/pages/42"


@pytest.mark.django_db
class TestStart:
    def test_creates_the_organization_on_first_use_and_a_pending_session(self):
        session = PlanningSession.objects.start(
            "org-new", confluence_page_url=URL, planning_title="Q1", epic_id="EPIC-1",
            confluence_document_id="42",
        )
        session.refresh_from_db()
        assert Organization.objects.get(linear_id="org-new") == session.organization
        assert (session.status, session.progress, session.error) == ("pending", 0, "")
        assert (session.planning_title, session.confluence_page_url) == ("Q1", URL)
        assert (session.epic_id, session.confluence_document_id) == ("EPIC-1", "42")
        assert session.created_at.tzinfo is not None

    def test_reuses_an_existing_organization(self):
        organization = make_organization(linear_id="org-1")
        PlanningSession.objects.start("org-1", confluence_page_url=URL, planning_title="A")
        PlanningSession.objects.start("org-1", confluence_page_url=URL, planning_title="B")
        assert Organization.objects.filter(linear_id="org-1").count() == 1
        assert PlanningSession.objects.filter(organization=organization).count() == 2

    def test_links_a_program_increment_of_the_same_organization(self):
        pi = make_program_increment(organization=make_organization(linear_id="org-pi"))
        session = PlanningSession.objects.start(
            "org-pi", confluence_page_url=URL, planning_title="A", program_increment=pi
        )
        assert PlanningSession.objects.get(pk=session.pk).program_increment == pi

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"confluence_page_url": ""}, ValidationError, "confluence_page_url must not be empty"),
            ({"confluence_page_url": "not a url"}, ValidationError, "must be an http(s) URL"),
            ({"confluence_page_url": "ftp://x.example/a"}, ValidationError, "must be an http(s) URL"),
            ({"planning_title": "   "}, ValidationError, "planning_title must not be empty"),
            ({"planning_title": "a\x00b"}, ValidationError, "planning_title must not contain NUL"),
            ({"planning_title": "x" * 501}, ValidationError, "planning_title is 501 characters long"),
            ({"planning_title": 5}, ValueError, "planning_title must be a string, not int"),
            ({"epic_id": "e" * 256}, ValidationError, "epic_id is 256 characters long"),
            ({"program_increment": "PI-1"}, ValueError, "program_increment must be a ProgramIncrement"),
            ({"status": "completed"}, TypeError, "unexpected keyword arguments: status"),
        ],
    )
    def test_refuses_bad_input_and_writes_nothing(self, kwargs, error, message):
        arguments = {"confluence_page_url": URL, "planning_title": "Q1", **kwargs}
        with pytest.raises(error) as excinfo:
            PlanningSession.objects.start("org-bad", **arguments)
        assert message in str(excinfo.value)
        assert not Organization.objects.filter(linear_id="org-bad").exists()
        assert not PlanningSession.objects.exists()

    @pytest.mark.parametrize("organization_id", ["", None, 7])
    def test_refuses_a_bad_organization_id(self, organization_id):
        with pytest.raises((ValidationError, ValueError), match="organization_id"):
            PlanningSession.objects.start(organization_id, confluence_page_url=URL, planning_title="Q1")
        assert not Organization.objects.exists()

    def test_refuses_a_program_increment_of_another_organization(self):
        pi = make_program_increment(organization=make_organization(linear_id="org-a"))
        with pytest.raises(ValidationError, match="belongs to another organization"):
            PlanningSession.objects.start(
                "org-b", confluence_page_url=URL, planning_title="A", program_increment=pi
            )
        assert not PlanningSession.objects.exists()
        # The transaction rolled back the organization ensure() created, too.
        assert not Organization.objects.filter(linear_id="org-b").exists()


@pytest.mark.django_db
class TestForOrganization:
    def test_newest_first_and_only_that_organization(self):
        organization = make_organization(linear_id="org-1")
        now = timezone.now()
        old = make_planning_session(organization=organization, created_at=now - dt.timedelta(days=2))
        new = make_planning_session(organization=organization, created_at=now)
        middle = make_planning_session(organization=organization, created_at=now - dt.timedelta(days=1))
        make_planning_session(created_at=now + dt.timedelta(days=1))  # another organization
        assert list(PlanningSession.objects.for_organization("org-1")) == [new, middle, old]

    def test_same_instant_is_ordered_by_id_descending(self):
        organization = make_organization(linear_id="org-1")
        now = timezone.now()
        first = make_planning_session(organization=organization, created_at=now)
        second = make_planning_session(organization=organization, created_at=now)
        assert list(PlanningSession.objects.for_organization("org-1")) == [second, first]

    def test_unknown_organization_is_empty_and_creates_nothing(self):
        assert list(PlanningSession.objects.for_organization("nobody")) == []
        assert not Organization.objects.exists()

    def test_chains_with_status_filters(self):
        organization = make_organization(linear_id="org-1")
        pending = make_planning_session(organization=organization)
        running = make_planning_session(organization=organization, status="processing")
        failed = make_planning_session(organization=organization, status="failed", error="boom")
        done = make_planning_session(organization=organization, status="completed", progress=100)
        sessions = PlanningSession.objects.for_organization("org-1")
        assert list(sessions.pending()) == [pending]
        assert list(sessions.in_progress()) == [running]
        assert list(sessions.failed()) == [failed]
        assert list(sessions.completed()) == [done]

    def test_is_one_query(self, django_assert_num_queries):
        organization = make_organization(linear_id="org-1")
        for _ in range(3):
            make_planning_session(organization=organization)
        with django_assert_num_queries(1):
            assert len(list(PlanningSession.objects.for_organization("org-1"))) == 3


@pytest.mark.django_db
class TestTransitions:
    def test_happy_path_pending_processing_completed(self):
        session = make_planning_session()
        before = session.updated_at
        session.mark_in_progress()
        assert session.status == "processing"
        session.set_progress(10)
        session.set_progress(10)  # same value again is allowed
        session.set_progress(55)
        row = PlanningSession.objects.get(pk=session.pk)
        assert (row.status, row.progress) == ("processing", 55)
        assert row.updated_at > before
        session.mark_completed()
        row.refresh_from_db()
        assert (row.status, row.progress) == ("completed", 100)
        assert (session.status, session.progress) == ("completed", 100)

    @pytest.mark.parametrize("start", ["pending", "processing"])
    def test_mark_failed_from_pending_or_processing_records_the_error(self, start):
        session = make_planning_session(status=start)
        session.mark_failed("Confluence returned 404")
        row = PlanningSession.objects.get(pk=session.pk)
        assert (row.status, row.error) == ("failed", "Confluence returned 404")
        assert (session.status, session.error) == ("failed", "Confluence returned 404")

    @pytest.mark.parametrize(
        ("start", "method", "args", "message"),
        [
            ("processing", "mark_in_progress", (), "from 'processing' to 'processing'"),
            ("completed", "mark_in_progress", (), "from 'completed' to 'processing'"),
            ("failed", "mark_in_progress", (), "from 'failed' to 'processing'"),
            ("pending", "mark_completed", (), "from 'pending' to 'completed'"),
            ("completed", "mark_completed", (), "from 'completed' to 'completed'"),
            ("failed", "mark_completed", (), "from 'failed' to 'completed'"),
            ("completed", "mark_failed", ("late",), "from 'completed' to 'failed'"),
            ("failed", "mark_failed", ("again",), "from 'failed' to 'failed'"),
            ("pending", "set_progress", (5,), "is 'pending': progress can only be set while 'processing'"),
            ("completed", "set_progress", (5,), "is 'completed': progress can only be set"),
        ],
    )
    def test_illegal_moves_are_refused_and_change_nothing(self, start, method, args, message):
        progress = 100 if start == "completed" else 0
        session = make_planning_session(status=start, progress=progress, error="")
        fields = ("status", "progress", "error", "updated_at")
        before = PlanningSession.objects.values(*fields).get(pk=session.pk)
        with pytest.raises(ValidationError) as excinfo:
            getattr(session, method)(*args)
        assert message in excinfo.value.messages[0]
        after = PlanningSession.objects.values(*fields).get(pk=session.pk)
        assert after == before

    def test_a_stale_instance_sees_the_status_the_row_has(self):
        session = make_planning_session()
        PlanningSession.objects.filter(pk=session.pk).update(status="failed")
        with pytest.raises(ValidationError, match="from 'failed' to 'processing'"):
            session.mark_in_progress()
        assert session.status == "failed"

    def test_progress_never_goes_backwards(self):
        session = make_planning_session(status="processing")
        session.set_progress(60)
        with pytest.raises(ValidationError, match="is at 60%: progress cannot go back to 40%"):
            session.set_progress(40)
        assert PlanningSession.objects.get(pk=session.pk).progress == 60

    @pytest.mark.parametrize(("value", "error"), [(-1, ValidationError), (101, ValidationError),
                                                  (50.5, ValueError), ("50", ValueError), (True, ValueError)])
    def test_progress_must_be_an_int_from_0_to_100(self, value, error):
        session = make_planning_session(status="processing")
        with pytest.raises(error, match="percent"):
            session.set_progress(value)
        assert PlanningSession.objects.get(pk=session.pk).progress == 0

    def test_a_percent_of_thousands_of_digits_is_refused_naming_its_size(self):
        session = make_planning_session(status="processing")
        # str() of an int this long raises ValueError in CPython: the message must not build it.
        with pytest.raises(ValidationError, match=r"percent must be between 0 and 100 \(got an integer of"):
            session.set_progress(10**5000)
        assert PlanningSession.objects.get(pk=session.pk).progress == 0

    @pytest.mark.parametrize("error", ["", "   ", None])
    def test_mark_failed_needs_an_error_message(self, error):
        session = make_planning_session(status="processing")
        with pytest.raises((ValidationError, ValueError), match="error"):
            session.mark_failed(error)
        assert PlanningSession.objects.get(pk=session.pk).status == "processing"

    def test_a_deleted_session_is_reported(self):
        session = make_planning_session()
        PlanningSession.objects.filter(pk=session.pk).delete()
        with pytest.raises(ValidationError, match="does not exist"):
            session.mark_in_progress()

    def test_a_transition_is_one_update_query(self, django_assert_num_queries):
        session = make_planning_session()
        with django_assert_num_queries(1):
            session.mark_in_progress()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_only_one_of_many_racing_workers_picks_a_session_up():
    session = make_planning_session()
    # Loaded before the race: every worker's instance still says 'pending'.
    instances = [PlanningSession.objects.get(pk=session.pk) for _ in range(WRITERS)]

    def pick_up(n: int) -> str:
        try:
            instances[n].mark_in_progress()
        except ValidationError:
            return "refused"
        return "won"

    outcomes = run_together(pick_up)
    assert_no_errors(outcomes)
    assert sorted(o.result for o in outcomes) == ["refused"] * (WRITERS - 1) + ["won"]
    assert PlanningSession.objects.get(pk=session.pk).status == "processing"


@pytest.mark.django_db
class TestProgramIncrementQueries:
    def test_for_organization_latest_start_first(self):
        organization = make_organization(linear_id="org-1")
        q1 = make_program_increment(organization=organization, start_date=dt.date(2026, 1, 5),
                                    end_date=dt.date(2026, 3, 27))
        q2 = make_program_increment(organization=organization, start_date=dt.date(2026, 4, 6),
                                    end_date=dt.date(2026, 6, 26))
        make_program_increment()
        assert list(ProgramIncrement.objects.for_organization("org-1")) == [q2, q1]

    def test_current_contains_the_day_including_both_ends(self):
        organization = make_organization(linear_id="org-1")
        pi = make_program_increment(organization=organization, start_date=dt.date(2026, 1, 5),
                                    end_date=dt.date(2026, 3, 27))
        increments = ProgramIncrement.objects
        assert list(increments.current("org-1", dt.date(2026, 1, 5))) == [pi]
        assert list(increments.current("org-1", dt.date(2026, 3, 27))) == [pi]
        assert list(increments.current("org-1", dt.date(2026, 3, 28))) == []
        assert list(increments.current("org-1", dt.date(2026, 1, 4))) == []

    def test_current_refuses_a_datetime(self):
        with pytest.raises(ValueError, match="on must be a date"):
            ProgramIncrement.objects.current("org-1", timezone.now())

    def test_current_lists_only_the_organizations_increments(self):
        day = dt.date(2026, 2, 1)
        span = {"start_date": dt.date(2026, 1, 5), "end_date": dt.date(2026, 3, 27)}
        mine = make_program_increment(organization=make_organization(linear_id="org-a"), **span)
        later = make_program_increment(
            organization=mine.organization, start_date=dt.date(2026, 1, 20), end_date=dt.date(2026, 2, 20)
        )
        make_program_increment(organization=make_organization(linear_id="org-b"), **span)

        assert list(ProgramIncrement.objects.current("org-a", day)) == [later, mine]
        assert list(ProgramIncrement.objects.current("org-c", day)) == []

    def test_current_requires_the_organization(self):
        with pytest.raises(TypeError):
            ProgramIncrement.objects.current()  # type: ignore[call-arg]
        with pytest.raises(ValueError, match="organization_id must be a string, not date"):
            ProgramIncrement.objects.current(dt.date(2026, 2, 1))  # the old, unscoped form

    def test_clean_explains_end_before_start(self):
        pi = ProgramIncrement(organization=make_organization(), pi_id="PI-1", start_date=dt.date(2026, 2, 1),
                              end_date=dt.date(2026, 1, 1))
        with pytest.raises(ValidationError, match="end date must not be before the start date"):
            pi.full_clean()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_completing_and_failing_at_once_leaves_exactly_one_winner():
    session = make_planning_session(status="processing")

    def finish(n: int) -> str | None:
        mine = PlanningSession.objects.get(pk=session.pk)
        try:
            if n % 2:
                mine.mark_completed()
                return "completed"
            mine.mark_failed(f"worker {n}")
            return "failed"
        except ValidationError:
            return None

    outcomes = run_together(finish)
    assert_no_errors(outcomes)
    winners = [o.result for o in outcomes if o.result is not None]
    assert len(winners) == 1
    row = PlanningSession.objects.get(pk=session.pk)
    assert row.status == winners[0]
    assert row.progress == (100 if winners[0] == "completed" else 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_progress_updates_end_at_the_highest_value():
    session = make_planning_session(status="processing")
    values = [(n * 37) % 101 for n in range(WRITERS)]

    def report(n: int) -> bool:
        try:
            PlanningSession.objects.get(pk=session.pk).set_progress(values[n])
            return True
        except ValidationError:
            return False

    outcomes = run_together(report)
    assert_no_errors(outcomes)
    assert any(o.result for o in outcomes)
    assert PlanningSession.objects.get(pk=session.pk).progress == max(values)


@pytest.mark.django_db
def test_a_refused_page_url_is_not_echoed_in_the_error():
    with pytest.raises(ValidationError) as excinfo:
        PlanningSession.objects.start(
            "org-1", confluence_page_url="javascript:alert(1)?access_token=s3cr3t", planning_title="x"
        )
    assert "s3cr3t" not in str(excinfo.value)
    assert "must be an http(s) URL" in str(excinfo.value)
