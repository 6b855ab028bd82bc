"""Bulk writes through the API against ``INSERT … ON CONFLICT`` run in bulk on the raw driver.

    DATABASE_URL=... python -m benchmarks.bulk --engine postgresql|sqlite [--quick] [--json-out F]

* ``save_planning_result`` with 100 features × 10 stories + 20 enablers (1,120 rows) into a new
  session, then the same call again (idempotent: nothing changes). Baseline: one transaction that locks
  the session, upserts features (``ON CONFLICT … DO UPDATE … WHERE`` the text changed), reads their ids,
  then upserts stories and enablers in bulk; it is run twice in the same way.
* ``LinearIssueCache.objects.upsert_many`` of 10,000 issues, new ids then the same ids with new data.
  Baseline: the organization lookup and
  ``INSERT … ON CONFLICT (organization_id, linear_issue_id) DO UPDATE`` in bulk, in one transaction,
  JSON-encoding each issue. (On PostgreSQL the API copies each batch to a
  temporary table with binary ``COPY`` first, which Django's query capture does not count: the note
  adds it.)

"In bulk" is the driver's fastest way (:meth:`benchmarks.common.RawDB.insert_many`): multi-row
``VALUES`` of 1,000 rows per statement on PostgreSQL (psycopg's ``executemany`` on Django's
client-side-binding cursor makes a round trip per row, so it would be a weak baseline), ``executemany``
on SQLite.

Each figure is rows/s of the median call; the ratio is API time ÷ raw time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    RawDB,
    Timing,
    count_queries,
    engine_name,
    error_result,
    main,
    make_result,
    median_timing,
    timed,
)

logger = logging.getLogger(__name__)

ENABLER_TYPES = ("architecture", "infrastructure", "compliance", "exploration", "technical_debt", "research")


def planning_result(features: int, stories: int, enablers: int) -> dict[str, list[dict[str, Any]]]:
    """The agent's parsed result: ``features`` features of ``stories`` stories, and ``enablers`` enablers."""
    return {
        "features": [
            {
                "feature_id": f"FEAT-{f}",
                "title": f"Feature {f}: self-service onboarding for team {f % 9}",
                "description": "Lets a new team onboard without an operator. " * 3,
                "stories": [
                    {
                        "story_id": f"STORY-{f}-{s}",
                        "title": f"Story {f}.{s}: as a user I can finish step {s}",
                        "description": "Acceptance: the step is saved and can be resumed. " * 2,
                    }
                    for s in range(stories)
                ],
            }
            for f in range(features)
        ],
        "enablers": [
            {
                "enabler_id": f"ENAB-{e}",
                "title": f"Enabler {e}: upgrade the message queue",
                "description": "Removes a scaling limit found in the last PI. " * 2,
                "enabler_type": ENABLER_TYPES[e % len(ENABLER_TYPES)],
            }
            for e in range(enablers)
        ],
    }


def linear_issue(n: int, version: int = 0) -> dict[str, Any]:
    """A Linear issue as the agent caches it (about 700 bytes of JSON)."""
    return {
        "id": f"issue-{n:08d}",
        "identifier": f"ENG-{n}",
        "title": f"Issue {n}: fix the flaky importer test (v{version})",
        "description": "Steps to reproduce: run the importer twice against the same source. " * 3,
        "priority": n % 5,
        "estimate": n % 8,
        "state": {"id": f"state-{n % 6}", "name": ("Todo", "In Progress", "Done")[n % 3], "type": "started"},
        "team": {"id": f"team-{n % 12}", "key": "ENG"},
        "assignee": {"id": f"user-{n % 40}", "name": f"User {n % 40}"},
        "labels": [{"id": f"label-{n % 10}", "name": "backend"}, {"id": "label-x", "name": "import"}],
        "createdAt": "2026-10-01T09:00:00.000Z",
        "updatedAt": f"2026-11-{1 + n % 28:02d}T10:00:00.000Z",
        "url": f"https://linear.app/acme/issue/ENG-{n}",
    }


def _bulk_result(name: str, engine: str, rows: int, api: list[Timing], raw: list[Timing], note: str) -> dict:
    api_t, raw_t = median_timing(api), median_timing(raw)
    return make_result(
        name,
        engine=engine,
        metric="rows_per_s",
        value=rows / api_t.wall,
        baseline=rows / raw_t.wall,
        ratio=api_t.wall / raw_t.wall,
        unit="rows/s",
        note=f"{note}; client CPU {api_t.cpu * 1000:.0f} vs {raw_t.cpu * 1000:.0f} ms per call",
    )


# --- save_planning_result --------------------------------------------------------------------------


def bench_planning(
    raw: RawDB, *, iterations: int, features: int, stories: int, enablers: int, prefix: str
) -> list[dict[str, Any]]:
    """Time the first and the idempotent second ``save_planning_result`` against the raw upserts."""
    from planning.models import PlanningSession
    from planning.services import save_planning_result

    engine = engine_name()
    data = planning_result(features, stories, enablers)
    rows = features * (1 + stories) + enablers
    sql = raw.sql
    lock = "SELECT id FROM planning_planningsession WHERE id = %s" + (
        " FOR UPDATE" if raw.is_postgresql else ""
    )
    lock = sql(lock)
    changed = "WHERE {t}.title <> EXCLUDED.title OR {t}.description <> EXCLUDED.description"
    text_update = (
        "SET title = EXCLUDED.title, description = EXCLUDED.description, updated_at = EXCLUDED.updated_at"
    )
    feature_head = (
        "INSERT INTO planning_feature (created_at, updated_at, planning_session_id, feature_id, title, "
        "description)"
    )
    feature_tail = f"ON CONFLICT (planning_session_id, feature_id) DO UPDATE {text_update} " + changed.format(
        t="planning_feature"
    )
    feature_ids = sql("SELECT feature_id, id FROM planning_feature WHERE planning_session_id = %s")
    story_head = (
        "INSERT INTO planning_story (created_at, updated_at, planning_feature_id, story_id, title, "
        "description)"
    )
    story_tail = f"ON CONFLICT (planning_feature_id, story_id) DO UPDATE {text_update} " + changed.format(
        t="planning_story"
    )
    enabler_head = (
        "INSERT INTO planning_enabler (created_at, updated_at, planning_session_id, enabler_id, title, "
        "description, enabler_type)"
    )
    enabler_tail = (
        f"ON CONFLICT (planning_session_id, enabler_id) DO UPDATE {text_update}, enabler_type = "
        "EXCLUDED.enabler_type "
        + changed.format(t="planning_enabler")
        + " OR planning_enabler.enabler_type <> EXCLUDED.enabler_type"
    )
    six = "(%s, %s, %s, %s, %s, %s)"

    def stamp() -> Any:
        now = dt.datetime.now(dt.UTC)
        return now if raw.is_postgresql else str(now.replace(tzinfo=None))

    def save_raw(session_id: int) -> None:
        now = stamp()
        with raw.atomic():
            raw.fetchall(lock, (session_id,))
            raw.insert_many(
                feature_head,
                six,
                feature_tail,
                [
                    (now, now, session_id, f["feature_id"], f["title"], f["description"])
                    for f in data["features"]
                ],
            )
            ids = dict(raw.fetchall(feature_ids, (session_id,)))
            raw.insert_many(
                story_head,
                six,
                story_tail,
                [
                    (now, now, ids[f["feature_id"]], s["story_id"], s["title"], s["description"])
                    for f in data["features"]
                    for s in f["stories"]
                ],
            )
            raw.insert_many(
                enabler_head,
                "(%s, %s, %s, %s, %s, %s, %s)",
                enabler_tail,
                [
                    (now, now, session_id, e["enabler_id"], e["title"], e["description"], e["enabler_type"])
                    for e in data["enablers"]
                ],
            )

    def new_session(n: int) -> PlanningSession:
        return PlanningSession.objects.start(
            f"{prefix}-planning-org",
            confluence_page_url=f"https://acme.atlassian.net/wiki/pages/{n}",
            planning_title=f"PI planning {n}",
        )

    api_first: list[Timing] = []
    api_second: list[Timing] = []
    raw_first: list[Timing] = []
    raw_second: list[Timing] = []
    queries_first = queries_second = 0
    # One warm-up of each side, then alternate; a new session for every call pair.
    for n in range(iterations + 1):
        session = new_session(2 * n)
        first, _ = timed(lambda s=session: save_planning_result(s, **data))
        second, _ = timed(lambda s=session: save_planning_result(s, **data))
        raw_session = new_session(2 * n + 1)
        raw_one, _ = timed(lambda s=raw_session: save_raw(s.pk))
        raw_two, _ = timed(lambda s=raw_session: save_raw(s.pk))
        if n == 0:
            continue
        api_first.append(first)
        api_second.append(second)
        raw_first.append(raw_one)
        raw_second.append(raw_two)
    session = new_session(10**6)
    queries_first, _ = count_queries(lambda: save_planning_result(session, **data))
    queries_second, _ = count_queries(lambda: save_planning_result(session, **data))
    shape = f"{features} features × {stories} stories + {enablers} enablers"
    return [
        _bulk_result(
            "save_planning_result (new session)",
            engine,
            rows,
            api_first,
            raw_first,
            f"{shape} = {rows} rows; {queries_first} API statements vs 5 raw "
            f"(3 bulk upserts); median of {iterations}",
        ),
        _bulk_result(
            "save_planning_result (again, unchanged)",
            engine,
            rows,
            api_second,
            raw_second,
            f"{queries_second} API statements vs 5 raw; median of {iterations}",
        ),
    ]


# --- LinearIssueCache.objects.upsert_many --------------------------------------------------------


def bench_issue_cache(raw: RawDB, *, iterations: int, issues: int, prefix: str) -> list[dict[str, Any]]:
    """Time ``upsert_many`` of new and of existing issues against a raw bulk upsert."""
    from sync.models import LinearIssueCache

    engine = engine_name()
    organization_id = f"{prefix}-cache-org"
    sql = raw.sql
    select_org = sql("SELECT id FROM accounts_organization WHERE linear_id = %s")
    head = "INSERT INTO sync_linearissuecache (organization_id, linear_issue_id, issue_data, last_updated)"
    tail = (
        "ON CONFLICT (organization_id, linear_issue_id) DO UPDATE SET "
        "issue_data = EXCLUDED.issue_data, last_updated = EXCLUDED.last_updated"
    )
    dumps = json.dumps

    def upsert_raw(batch: list[dict[str, Any]]) -> None:
        now = dt.datetime.now(dt.UTC)
        stamp = now if raw.is_postgresql else str(now.replace(tzinfo=None))
        with raw.atomic():
            org = raw.fetchone(select_org, (organization_id,))[0]
            raw.insert_many(
                head, "(%s, %s, %s, %s)", tail, [(org, issue["id"], dumps(issue), stamp) for issue in batch]
            )

    def batch(tag: str, version: int) -> list[dict[str, Any]]:
        return [{**linear_issue(n, version), "id": f"{prefix}-{tag}-{n:08d}"} for n in range(issues)]

    LinearIssueCache.objects.upsert_many(organization_id, batch("warm", 0)[:100])  # creates the organization
    upsert_raw(batch("warm-raw", 0)[:100])
    timings: dict[str, list[Timing]] = {"api_new": [], "api_existing": [], "raw_new": [], "raw_existing": []}
    for n in range(iterations):
        api_batch, raw_batch = batch(f"api{n}", 0), batch(f"raw{n}", 0)
        api_changed, raw_changed = batch(f"api{n}", 1), batch(f"raw{n}", 1)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("api_new", lambda b=api_batch: LinearIssueCache.objects.upsert_many(organization_id, b)),
            ("raw_new", lambda b=raw_batch: upsert_raw(b)),
            ("api_existing", lambda b=api_changed: LinearIssueCache.objects.upsert_many(organization_id, b)),
            ("raw_existing", lambda b=raw_changed: upsert_raw(b)),
        ]
        for key, step in steps:
            seconds, _ = timed(step)
            timings[key].append(seconds)
    queries, _ = count_queries(
        lambda: LinearIssueCache.objects.upsert_many(organization_id, batch("count", 0))
    )
    return [
        _bulk_result(
            "LinearIssueCache.upsert_many (new issues)",
            engine,
            issues,
            timings["api_new"],
            timings["raw_new"],
            f"{issues} issues; {queries} API statements"
            + (" + 1 COPY per 1,000 rows" if engine == "postgresql" else "")
            + f" vs 1 + 1 per 1,000 rows raw; median of {iterations}",
        ),
        _bulk_result(
            "LinearIssueCache.upsert_many (existing issues)",
            engine,
            issues,
            timings["api_existing"],
            timings["raw_existing"],
            f"{issues} issues, new data; median of {iterations}",
        ),
    ]


def run(
    *,
    quick: bool = False,
    iterations: int | str | None = None,
    issues: int | str | None = None,
    prefix: str = "bench",
) -> list[dict[str, Any]]:
    """Run both bulk benchmarks and return their result rows."""
    engine = engine_name()
    iterations = int(iterations) if iterations is not None else (2 if quick else 7)
    issues = int(issues) if issues is not None else (1000 if quick else 10_000)
    raw = RawDB()
    results: list[dict[str, Any]] = []
    try:
        for name, bench in (
            (
                "save_planning_result",
                lambda: bench_planning(
                    raw, iterations=iterations, features=100, stories=10, enablers=20, prefix=prefix
                ),
            ),
            (
                "LinearIssueCache.upsert_many",
                # As many rounds as the planning benchmark: with 3 the medians swung by 0.4 in ratio.
                lambda: bench_issue_cache(raw, iterations=iterations, issues=issues, prefix=prefix),
            ),
        ):
            try:
                results.extend(bench())
            except Exception as exc:
                logger.exception("%s failed", name)
                results.append(error_result(name, engine, exc))
    finally:
        raw.close()
    return results


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
