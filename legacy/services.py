"""Import a deployment of the old TypeScript system into the new models (``manage.py import_legacy``).

:func:`import_legacy` reads the old PostgreSQL database (read-only, server-side cursors) and, when
given, the old SQLite sync file, and writes every row into the new models inside one
``transaction.atomic()``: a failure anywhere, or a rejected row without ``skip_invalid``, leaves the
target as it was; a dry run does all the work and rolls back.

Per old table, rows are streamed in batches, in merge-key order; each batch costs a handful of queries
(already imported? parents, existing duplicates when the table had rows, id collisions, one insert of
the rows, one of their map entries), never a query per row, so memory stays flat. Inserts are binary
``COPY`` on PostgreSQL and ``bulk_create`` elsewhere (see :class:`_Writer`).

The import map (:class:`legacy.models.ImportedRow`) records where every old row went, which makes a
second run import nothing twice and lets children find their new parent. Old ids of program
increments, planning sessions, features, stories and enablers are kept unless the target already uses
them (then the row gets a free id, the map says so and the report lists it); PostgreSQL sequences are
moved past the kept ids.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from django.core.management.color import no_style
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction

from accounts.models import ConfluenceToken, LinearToken, Organization
from legacy import convert
from legacy.convert import Invalid
from legacy.models import ImportAction, ImportedRow, ImportSource
from legacy.sources import PostgresSource, SourceError, SqliteSource
from legacy.tables import (
    HISTORY,
    SQLITE_SPECS,
    UNPLACED_ALWAYS,
    UNPLACED_FIRST_SHAPE,
    Rule,
    Spec,
    check_values,
    field_rules,
    now,
    postgres_specs,
)
from planning.models import (
    Enabler,
    Epic,
    Feature,
    PIFeature,
    PIObjective,
    PIRisk,
    PlanningSession,
    ProgramIncrement,
    Story,
)
from sync.models import Conflict, ConflictResolution, ResolutionAction, SyncHistory, SyncState

logger = logging.getLogger(__name__)

#: Old columns whose values never go into the import map, the report or a log line.
SECRET_COLUMNS = frozenset({"access_token", "refresh_token"})

#: Default rows per batch (one server-side fetch, one bulk insert).
DEFAULT_BATCH_SIZE = 2000
#: Largest batch accepted: memory grows with the batch (about 5 KiB a conflict row).
MAX_BATCH_SIZE = 100_000


class LegacyImportError(Exception):
    """The import stopped; nothing was written. ``report`` says what was read and what was wrong."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


# --- The report ----------------------------------------------------------------------------------


@dataclasses.dataclass
class TableStats:
    """Counts for one old table of one source."""

    source: str
    table: str
    model: str
    kind: str = "postgresql"
    read: int = 0
    imported: int = 0
    merged: int = 0
    skipped: int = 0
    already: int = 0


@dataclasses.dataclass(frozen=True)
class RowNote:
    """One old row the report names: rejected, merged or given a new id."""

    source: str
    table: str
    old_id: str
    detail: str

    def __str__(self) -> str:
        return f"{self.table} {self.old_id}: {self.detail}"


@dataclasses.dataclass
class SourceInfo:
    """What the import found in one old database."""

    label: str
    kind: str
    tables: list[str]
    sync_history_shape: str | None = None
    applied_migrations: list[str] | None = None


@dataclasses.dataclass
class ImportReport:
    """Everything an operator needs to check an import; ``as_text()`` prints it."""

    dry_run: bool = False
    skip_invalid: bool = False
    sources: list[SourceInfo] = dataclasses.field(default_factory=list)
    tables: dict[tuple[str, str], TableStats] = dataclasses.field(default_factory=dict)
    organizations_created: int = 0
    rejected: list[RowNote] = dataclasses.field(default_factory=list)
    merged: list[RowNote] = dataclasses.field(default_factory=list)
    renumbered: list[RowNote] = dataclasses.field(default_factory=list)
    unplaced: list[str] = dataclasses.field(default_factory=list)
    committed: bool = False

    def stats(
        self, source: str, table: str, model: type[models.Model], kind: str = "postgresql"
    ) -> TableStats:
        """The counters of one (source, old table), created on first use."""
        key = (source, table)
        if key not in self.tables:
            self.tables[key] = TableStats(source, table, model._meta.label, kind)
        return self.tables[key]

    def total(self, counter: str) -> int:
        """One counter summed over every table."""
        return sum(getattr(stats, counter) for stats in self.tables.values())

    def as_text(self) -> str:
        """The report as the command prints it."""
        lines: list[str] = []
        for info in self.sources:
            lines.append(f"Source {info.label} ({info.kind}): tables {', '.join(info.tables) or 'none'}")
            if info.sync_history_shape:
                lines.append(f"  sync_history shape: {info.sync_history_shape}")
            if info.kind == "postgresql":
                if info.applied_migrations is None:
                    lines.append("  old migrations: no migrations table (unknown which files ran)")
                else:
                    lines.append(f"  old migrations applied: {', '.join(info.applied_migrations) or 'none'}")
        header = (
            f"{'old table':<34} {'new model':<26} {'read':>8} {'imported':>9} {'merged':>7} "
            f"{'skipped':>8} {'already':>8}"
        )
        lines += ["", header, "-" * len(header)]
        for stats in self.tables.values():
            name = stats.table if stats.kind == "postgresql" else f"{stats.table} ({stats.kind})"
            lines.append(
                f"{name:<34} {stats.model:<26} {stats.read:>8} {stats.imported:>9} {stats.merged:>7} "
                f"{stats.skipped:>8} {stats.already:>8}"
            )
        lines.append(
            f"{'total':<34} {'':<26} {self.total('read'):>8} {self.total('imported'):>9} "
            f"{self.total('merged'):>7} {self.total('skipped'):>8} {self.total('already'):>8}"
        )
        lines.append(f"Organizations created: {self.organizations_created}")
        for title, notes in (
            ("Rejected rows" + (" (skipped)" if self.skip_invalid else ""), self.rejected),
            ("Merged rows", self.merged),
            ("Rows given a new id (old id taken in the target)", self.renumbered),
        ):
            if notes:
                lines += ["", f"{title}: {len(notes)}"]
                lines += [f"  {note}" for note in notes]
        if self.unplaced:
            lines += [
                "",
                "Old columns with no place in the new models (values kept in legacy_importedrow.data):",
            ]
            lines += [f"  {item}" for item in self.unplaced]
        lines.append("")
        if self.dry_run:
            lines.append("Dry run: everything was rolled back; nothing was written.")
        elif self.committed:
            lines.append("Committed.")
        else:
            lines.append("Nothing was written.")
        return "\n".join(lines)


_SKIPPED = object()


class _Candidate:
    __slots__ = ("data", "id_changed", "obj", "old_id", "values")

    def __init__(self, old_id: str, values: dict[str, Any], data: dict[str, Any]) -> None:
        self.old_id = old_id
        self.values = values
        self.data = data
        self.id_changed = False
        self.obj: models.Model | None = None


# --- The importer -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _keep_old_timestamps(model_classes: list[type[models.Model]]) -> Iterator[None]:
    """Turn off ``auto_now``/``auto_now_add`` while importing so that old timestamps are kept.

    Those flags make ``pre_save`` overwrite explicit values, even in ``bulk_create``. The import runs
    in its own process (a management command), so no other request sees the change.
    """
    saved = []
    for model in model_classes:
        for field in model._meta.concrete_fields:
            if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                saved.append((field, field.auto_now, field.auto_now_add))
                field.auto_now = field.auto_now_add = False
    try:
        yield
    finally:
        for field, auto_now, auto_now_add in saved:
            field.auto_now, field.auto_now_add = auto_now, auto_now_add


_PLAIN_TYPES = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "SmallAutoField",
        "CharField",
        "TextField",
        "SlugField",
        "EmailField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "PositiveBigIntegerField",
        "BooleanField",
        "DateTimeField",
        "DateField",
        "ForeignKey",
        "OneToOneField",
    }
)


class _Column(NamedTuple):
    name: str
    field: models.Field
    oid: int
    prepare: Callable[[Any], Any] | None


def _prep_save(field: models.Field, wrapper: Any, value: Any) -> Any:
    return field.get_db_prep_save(value, wrapper)


#: Models whose new rows nobody points at: the writer skips fetching their ids.
_UNREFERENCED = frozenset({ImportedRow, ConflictResolution})


class _Writer:
    """Inserts prepared rows: binary COPY on PostgreSQL, ``bulk_create`` elsewhere.

    On PostgreSQL, ``COPY ... FROM STDIN (FORMAT BINARY)`` costs a few microseconds a row where
    ``bulk_create`` costs tens, and the server parses no text. Values go through each field's
    ``get_db_prep_save`` unless the field is a plain or JSON type whose Python value the driver
    dumps itself for the column's type, so encrypted fields still encrypt. Rows without an id take
    theirs from the table's sequence first (one query a batch), so that the import map can point at
    them.
    """

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.postgres = connection.vendor == "postgresql"
        self._plans: dict[type[models.Model], list[_Column]] = {}

    def _plan(self, model: type[models.Model]) -> list[_Column]:
        """Per column: attname, field, its type oid, and how to prepare a value (None: as it is)."""
        if model not in self._plans:
            # The real wrapper, not django.db.connection: that proxy costs a context-local lookup on
            # every attribute access, which adds up at a few calls per value.
            wrapper = connections[DEFAULT_DB_ALIAS]
            with wrapper.cursor() as cursor:
                cursor.execute(
                    "SELECT attname, atttypid FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                    [wrapper.ops.quote_name(model._meta.db_table)],
                )
                oids = dict(cursor.fetchall())
            plan = []
            for field in model._meta.concrete_fields:
                if field.get_internal_type() in _PLAIN_TYPES:
                    prepare = None
                elif isinstance(field, models.JSONField) and field.encoder is None:
                    # The driver's jsonb dumper calls json.dumps, as Django's adapter would.
                    prepare = None
                else:
                    prepare = functools.partial(_prep_save, field, wrapper)
                plan.append(_Column(field.attname, field, oids[field.column], prepare))
            self._plans[model] = plan
        return self._plans[model]

    def insert(self, model: type[models.Model], rows: list[dict[str, Any]]) -> list[Any]:
        """Insert ``rows`` (attname → value) into ``model``'s table; return their primary keys.

        Rows of the import map and of the conflict resolution log (nothing points at them) take their
        ids from the column default, and the result is empty.
        """
        returning = model not in _UNREFERENCED
        if not rows:
            return []
        pk_name = model._meta.pk.attname
        if not self.postgres:
            objs = [model(**values) for values in rows]
            model._base_manager.bulk_create(objs, batch_size=self.batch_size)
            return [obj.pk for obj in objs] if returning else []
        table = model._meta.db_table
        plan = self._plan(model)
        with connection.cursor() as cursor:
            missing = [values for values in rows if values.get(pk_name) is None]
            if missing and not returning and len(missing) == len(rows):
                plan = [column for column in plan if column.name != pk_name]
            elif missing:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s::int)",
                    [connection.ops.quote_name(table), model._meta.pk.column, len(missing)],
                )
                for values, (pk,) in zip(missing, cursor.fetchall(), strict=True):
                    values[pk_name] = pk
            defaults = {column.name: column.field.get_default() for column in plan}
            names = ", ".join(connection.ops.quote_name(column.field.column) for column in plan)
            steps = [(column.name, column.prepare) for column in plan]
            # wrap_database_errors: the COPY goes through psycopg's own cursor; its errors come out as
            # Django's (IntegrityError, DataError...), as from every other statement of the import.
            with connection.wrap_database_errors, cursor.cursor.copy(
                f"COPY {connection.ops.quote_name(table)} ({names}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types([column.oid for column in plan])
                for values in rows:
                    copy.write_row(
                        [
                            values.get(name, defaults[name])
                            if prepare is None
                            else prepare(values.get(name, defaults[name]))
                            for name, prepare in steps
                        ]
                    )
        return [values[pk_name] for values in rows] if returning else []


class _Importer:
    def __init__(
        self, *, report: ImportReport, batch_size: int, progress: Callable[[TableStats], None] | None
    ) -> None:
        self.report = report
        self.batch_size = batch_size
        self.progress = progress
        self.writer = _Writer(batch_size)
        self.org_pks: dict[str, int] = {}
        #: Per (source, old table): old ids whose row did not keep its id in this run (rejected →
        #: _SKIPPED, merged or renumbered → the new pk). Small: exceptions only.
        self.moved: dict[tuple[str, str], dict[str, Any]] = {}
        #: Per (source, old table): old ids merged into another row in this run.
        self.merged_ids: dict[tuple[str, str], set[str]] = {}
        self.rules: dict[type[models.Model], list[Rule]] = {}
        self.started_at = now()
        self.source_ids: dict[str, int] = {}

    # Tables ---------------------------------------------------------------------------------------

    def import_table(self, source: PostgresSource | SqliteSource, spec: Spec) -> TableStats:
        """Stream one old table into its model; returns its counters."""
        stats = self.report.stats(source.label, spec.table, spec.model, source.kind)
        missing = [c for c in spec.columns if c not in source.tables()[spec.table]]
        if missing:
            raise SourceError(f"Old table {spec.table} in {source.label} has no column {', '.join(missing)}.")
        self.rules.setdefault(spec.model, field_rules(spec.model))
        state = self._table_state(source, spec)
        if spec.query is not None:
            batches = source.stream(spec.query, batch_size=self.batch_size)
        else:
            batches = source.stream_table(
                spec.table, spec.columns, order_by=spec.order_by, batch_size=self.batch_size
            )
        try:
            for rows in batches:
                self.import_batch(source, spec, rows, stats, state)
                if self.progress is not None:
                    self.progress(stats)
        finally:
            # Close the cursor now, while the source is still open, also when a batch failed.
            batches.close()
        if spec.keep_id:
            self.reset_sequences([spec.model])
        return stats

    def _table_state(self, source: Any, spec: Spec) -> dict[str, Any]:
        model = spec.model
        prior = ImportedRow.objects.for_table(self.source_pk(source), spec.table).exists()
        state: dict[str, Any] = {
            "prior": prior,
            # An empty target table cannot hold a duplicate of a row streamed in key order, except
            # of rows this run inserted earlier under a merged parent: only then ask the database.
            "target_had_rows": model._base_manager.exists(),
            "last_key": None,
            "last_winner": None,
        }
        if spec.keep_id:
            target_max = model._base_manager.aggregate(m=models.Max("pk"))["m"] or 0
            old_max = source.conn.execute(f"SELECT max(id) FROM {spec.table}").fetchone()[0] or 0  # noqa: S608
            state["target_max"] = target_max
            state["next_free"] = max(target_max, old_max) + 1
        return state

    def import_batch(
        self, source: Any, spec: Spec, rows: list[dict[str, Any]], stats: TableStats, state: dict[str, Any]
    ) -> None:
        """Convert, check, de-duplicate and insert one batch of old rows, with their map entries."""
        stats.read += len(rows)
        label = source.label
        if state["prior"]:
            done = set(
                ImportedRow.objects.for_table(self.source_ids[label], spec.table)
                .filter(old_id__in=[spec.id_of(r) for r in rows])
                .values_list("old_id", flat=True)
            )
            if done:
                stats.already += len(done)
                rows = [r for r in rows if spec.id_of(r) not in done]
        parent_of = self._parent_resolver(label, spec, rows) if spec.parent_table else None
        rules = self.rules[spec.model]
        candidates: list[_Candidate] = []
        for row in rows:
            old_id = spec.id_of(row)
            try:
                values = spec.convert(row)
                if parent_of is not None:
                    values[spec.parent_field] = parent_of(row)
                check_values(rules, values)
            except Invalid as exc:
                self._reject(label, spec.table, old_id, str(exc), stats)
                continue
            candidates.append(_Candidate(old_id, values, values.pop("_data", None) or {}))
        self._organizations(candidates)
        inserts, merges, replaces = self._deduplicate(label, spec, candidates, state)
        if spec.keep_id:
            self._assign_ids(label, spec, inserts, state)
        model = spec.model
        pks = self.writer.insert(model, [cand.values for cand in inserts])
        for cand, pk in zip(inserts, pks, strict=True):
            cand.obj = pk
        for cand, pk in replaces:
            fields = {k: v for k, v in cand.values.items() if k not in spec.merge_key and k != "id"}
            model._base_manager.filter(pk=pk).update(**fields)
        if model is Conflict:
            self._log_resolutions([c.values for c in inserts] + [c.values for c, _ in replaces])
        entries = [self._entry(label, spec, cand, cand.obj, ImportAction.IMPORTED) for cand in inserts]
        entries += [self._entry(label, spec, cand, pk, ImportAction.REPLACED) for cand, pk in replaces]
        moved = self.moved.setdefault((label, spec.table), {})
        merged_ids = self.merged_ids.setdefault((label, spec.table), set())
        for cand, survivor in merges:
            pk = survivor.obj if isinstance(survivor, _Candidate) else survivor
            entries.append(self._entry(label, spec, cand, pk, ImportAction.MERGED))
            moved[cand.old_id] = pk
            merged_ids.add(cand.old_id)
            key = ", ".join(f"{f}={cand.values[f]!r}" for f in spec.merge_key)
            self.report.merged.append(
                RowNote(label, spec.table, cand.old_id, f"same {key}: merged into {model._meta.label} {pk}")
            )
        for cand, pk in replaces:
            self.report.merged.append(
                RowNote(
                    label,
                    spec.table,
                    cand.old_id,
                    f"newer than {model._meta.label} {pk} (updated_at): replaced its values",
                )
            )
        for cand in inserts:
            if cand.id_changed:
                moved[cand.old_id] = cand.obj
        self.writer.insert(ImportedRow, entries)
        stats.imported += len(inserts)
        stats.merged += len(merges) + len(replaces)

    # Steps ---------------------------------------------------------------------------------------

    def source_pk(self, source: PostgresSource | SqliteSource) -> int:
        """The import map's row for this old database, created on its first import."""
        if source.label not in self.source_ids:
            row, _ = ImportSource.objects.get_or_create(label=source.label, defaults={"kind": source.kind})
            ImportSource.objects.filter(pk=row.pk).update(last_run_at=self.started_at)
            self.source_ids[source.label] = row.pk
        return self.source_ids[source.label]

    def _parent_resolver(
        self, label: str, spec: Spec, rows: list[dict[str, Any]]
    ) -> Callable[[dict[str, Any]], int]:
        """A function giving a row's new parent pk, or raising :class:`Invalid`."""
        # The import map knows every parent placed so far, in this run or an earlier one: one
        # indexed query a batch, and a child of a parent the old database lacks (a schema without its
        # foreign keys) is reported instead of failing at commit.
        column = spec.parent_column
        ids = [str(r[column]) for r in rows if r[column] is not None]
        found: dict[str, Any] = ImportedRow.objects.new_pks(self.source_ids[label], spec.parent_table, ids)
        rejected = self.moved.get((label, spec.parent_table), {})
        found.update((old, new) for old, new in rejected.items() if new is _SKIPPED)
        lookup = found.get

        def parent_of(row: dict[str, Any]) -> int:
            old = row[column]
            if old is None:
                raise Invalid(f"{column} is missing")
            new = lookup(str(old))
            if new is _SKIPPED:
                raise Invalid(f"its {column} {old} was rejected")
            if new is None:
                raise Invalid(f"{column} {old} is not a row of {spec.parent_table}")
            return int(new)

        return parent_of

    def _reject(self, label: str, table: str, old_id: str, reason: str, stats: TableStats) -> None:
        stats.skipped += 1
        self.moved.setdefault((label, table), {})[old_id] = _SKIPPED
        self.report.rejected.append(RowNote(label, table, old_id, reason))

    def _organizations(self, candidates: list[_Candidate]) -> None:
        """Replace each candidate's ``_org`` (a Linear id) by ``organization_id``, creating organizations."""
        wanted = {c.values["_org"] for c in candidates if "_org" in c.values}
        missing = wanted - self.org_pks.keys()
        if missing:
            found = dict(Organization.objects.filter(linear_id__in=missing).values_list("linear_id", "pk"))
            new = sorted(missing - found.keys())
            if new:
                Organization.objects.bulk_create([Organization(linear_id=linear_id) for linear_id in new])
                found.update(Organization.objects.filter(linear_id__in=new).values_list("linear_id", "pk"))
                self.report.organizations_created += len(new)
            self.org_pks.update(found)
        for cand in candidates:
            if "_org" in cand.values:
                cand.values["organization_id"] = self.org_pks[cand.values.pop("_org")]

    def _deduplicate(
        self,
        label: str,
        spec: Spec,
        candidates: list[_Candidate],
        state: dict[str, Any],
    ) -> tuple[list[_Candidate], list[tuple[_Candidate, Any]], list[tuple[_Candidate, Any]]]:
        """Split candidates into inserts, merges into another row, and replacements of an older row.

        Rows stream in merge-key order, so duplicates within the source are neighbours: only the last
        key is remembered (memory stays flat). The database is asked about existing rows only when
        the target table had rows before, or a row's parent was merged into another parent.
        """
        if not spec.merge_key:
            return candidates, [], []
        key_of = _key_getter(spec.merge_key)
        if state["target_had_rows"]:
            to_check = candidates
        elif spec.parent_table and self.merged_ids.get((label, spec.parent_table)):
            merged_parents = self.merged_ids[(label, spec.parent_table)]
            moved = self.moved.get((label, spec.parent_table), {})
            merged_pks = {moved[old] for old in merged_parents}
            to_check = [c for c in candidates if c.values[spec.parent_field] in merged_pks]
        else:
            to_check = []
        existing = self._existing(spec, {key_of(c.values) for c in to_check}) if to_check else {}
        inserts: list[_Candidate] = []
        merges: list[tuple[_Candidate, Any]] = []
        replaces: list[tuple[_Candidate, Any]] = []
        in_batch: dict[tuple[Any, ...], _Candidate] = {}
        last_key, last_winner = state["last_key"], state["last_winner"]
        newer = spec.newer_wins
        for cand in candidates:
            key = key_of(cand.values)
            if key in existing:
                pk, updated_at = existing[key]
                if newer and cand.values["updated_at"] > updated_at:
                    replaces.append((cand, pk))
                    existing[key] = (pk, cand.values["updated_at"])
                else:
                    merges.append((cand, pk))
                continue
            winner = in_batch.get(key)
            if winner is None and key == last_key:
                # A duplicate of the previous batch's last row, already inserted.
                if newer and cand.values["updated_at"] > last_winner.values["updated_at"]:
                    replaces.append((cand, last_winner.obj))
                    last_winner = cand
                    cand.obj = state["last_winner"].obj
                else:
                    merges.append((cand, last_winner))
                continue
            if winner is not None:
                if newer and cand.values["updated_at"] > winner.values["updated_at"]:
                    inserts[inserts.index(winner)] = cand
                    in_batch[key] = cand
                    cand, winner = winner, cand
                merges.append((cand, winner))
                continue
            in_batch[key] = cand
            inserts.append(cand)
        if inserts:
            state["last_key"] = key_of(inserts[-1].values)
            state["last_winner"] = inserts[-1]
        else:
            state["last_winner"] = last_winner
        return inserts, merges, replaces

    def _existing(self, spec: Spec, keys: set[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, Any]]:
        if not keys:
            return {}
        queryset = spec.model._base_manager.all()
        for index, name in enumerate(spec.merge_key):
            queryset = queryset.filter(**{f"{name}__in": {key[index] for key in keys}})
        extra = ("updated_at",) if spec.newer_wins else ()
        width = len(spec.merge_key)
        found = {}
        for row in queryset.values_list(*spec.merge_key, "pk", *extra):
            key = tuple(row[:width])
            if key in keys:
                found[key] = (row[width], row[width + 1] if extra else None)
        return found

    def _assign_ids(self, label: str, spec: Spec, inserts: list[_Candidate], state: dict[str, Any]) -> None:
        """Keep each row's old id unless the target already has it (then take the next free id)."""
        maybe_taken = []
        for cand in inserts:
            cand.values["id"] = int(cand.old_id)
            if cand.values["id"] <= state["target_max"]:
                maybe_taken.append(cand.values["id"])
        if not maybe_taken:
            return
        taken = set(spec.model._base_manager.filter(pk__in=maybe_taken).values_list("pk", flat=True))
        for cand in inserts:
            if cand.values["id"] in taken:
                cand.values["id"] = state["next_free"]
                state["next_free"] += 1
                cand.id_changed = True
                self.report.renumbered.append(
                    RowNote(
                        label,
                        spec.table,
                        cand.old_id,
                        f"id {cand.old_id} is taken in the target: now {spec.model._meta.label} "
                        f"{cand.values['id']}",
                    )
                )

    def _entry(self, label: str, spec: Spec, cand: _Candidate, pk: Any, action: str) -> dict[str, Any]:
        data = cand.data
        if action == ImportAction.MERGED:
            # The merged row's own values, so that nothing is lost (never its tokens).
            data = {**data, **{k: v for k, v in cand.values.items() if k not in SECRET_COLUMNS and k != "id"}}
        return {
            "source_id": self.source_ids[label],
            "old_table": spec.table,
            "old_id": cand.old_id,
            "model": spec.model._meta.label,
            "new_pk": str(pk),
            "action": action,
            "id_changed": cand.id_changed,
            "data": convert.jsonable(data) if data else {},
            "imported_at": self.started_at,
        }

    def _log_resolutions(self, conflicts: list[dict[str, Any]]) -> None:
        """A ``resolved`` ConflictResolution entry for every resolved conflict written."""
        entries = [
            {
                "conflict_id": values["id"],
                "action": ResolutionAction.RESOLVED,
                "strategy": values["resolution_strategy"],
                "resolved_change": values["resolved_change"],
                "by_id": None,
                "at": values["resolved_at"],
            }
            for values in conflicts
            if values["is_resolved"]
        ]
        self.writer.insert(ConflictResolution, entries)

    def reset_sequences(self, model_classes: list[type[models.Model]]) -> None:
        """Move PostgreSQL sequences past the ids written explicitly (SQLite's AUTOINCREMENT does it)."""
        statements = connection.ops.sequence_reset_sql(no_style(), model_classes)
        if statements:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)

    def epics_from_sessions(self, source: PostgresSource) -> TableStats:
        """Give each imported session with an old ``epic_id`` an :class:`~planning.models.Epic` row.

        The old schema kept only the Linear epic id on the session; the new shape has epics as rows,
        with the session's features under them. The epic gets the session's title (the old agent named
        the Linear epic after the planning) and its times, no planning id (the old system kept none),
        and every feature of the session that is under no epic. The import map records it under the
        old table ``planning_sessions.epic_id`` and the old session id, so a second run adds nothing.
        """
        table = "planning_sessions.epic_id"
        stats = self.report.stats(source.label, table, Epic, source.kind)
        source_id = self.source_pk(source)
        sessions = dict(
            ImportedRow.objects.for_table(source_id, "planning_sessions").values_list("new_pk", "old_id")
        )
        done = set(ImportedRow.objects.for_table(source_id, table).values_list("old_id", flat=True))
        candidates = (
            PlanningSession.objects.filter(pk__in=[int(pk) for pk in sessions])
            .exclude(epic_id="")
            .order_by("pk")
            .values_list("pk", "epic_id", "planning_title", "created_at", "updated_at")
        )
        epics = []
        for pk, epic_id, title, created_at, updated_at in candidates.iterator(chunk_size=self.batch_size):
            stats.read += 1
            if sessions[str(pk)] in done:
                stats.already += 1
                continue
            epics.append(
                Epic(
                    planning_session_id=pk,
                    epic_id=epic_id,
                    title=title,
                    created_at=created_at,
                    updated_at=updated_at,
                )
            )
        for start in range(0, len(epics), self.batch_size):
            batch = epics[start : start + self.batch_size]
            # An epic the agent already saved for the session (same Linear id) is kept, not duplicated.
            existing = set(
                Epic.objects.filter(planning_session__in=[epic.planning_session_id for epic in batch])
                .values_list("planning_session_id", "epic_id")
                .order_by()
            )
            new = [epic for epic in batch if (epic.planning_session_id, epic.epic_id) not in existing]
            Epic.objects.bulk_create(new)
            placed = {
                (session_pk, epic_id): pk
                for pk, session_pk, epic_id in Epic.objects.filter(
                    planning_session__in=[epic.planning_session_id for epic in batch]
                ).values_list("pk", "planning_session_id", "epic_id")
            }
            # One UPDATE per new epic: sessions are few (the old agent wrote one per planning run).
            for epic in new:
                pk = placed[epic.planning_session_id, epic.epic_id]
                Feature.objects.filter(planning_session=epic.planning_session_id, epic__isnull=True).update(
                    epic=pk
                )
            ImportedRow.objects.bulk_create(
                ImportedRow(
                    source_id=source_id,
                    old_table=table,
                    old_id=sessions[str(epic.planning_session_id)],
                    model=Epic._meta.label,
                    new_pk=str(placed[epic.planning_session_id, epic.epic_id]),
                    imported_at=self.started_at,
                )
                for epic in batch
            )
            stats.imported += len(new)
            stats.merged += len(batch) - len(new)
        return stats

    def refresh_conflict_counts(self) -> None:
        """Set ``conflict_count`` of every state row to its pair's unresolved conflicts.

        ``recount_conflicts`` without ``updated_at``: an import keeps the old rows' times. A pair whose
        conflicts a re-import marked resolved drops back to 0 too.
        """
        SyncState.objects.all().recount_conflicts()
        # Old conflicts had no organization: take the one their pair's sync state knows (issue 16).
        Conflict.objects.all().fill_organizations()


def _key_getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    return lambda values: tuple(values[name] for name in names)


def _describe(source: PostgresSource | SqliteSource) -> SourceInfo:
    tables = source.tables()
    shape = None
    if "sync_history" in tables:
        columns = tables["sync_history"]
        if "sync_config_id" in columns:
            shape = "first"
        elif "confluence_page_id" in columns:
            shape = "second"
        else:
            raise SourceError(
                f"sync_history in {source.label} has neither known shape "
                "(no sync_config_id, no confluence_page_id column)."
            )
        if source.kind == "sqlite" and shape != "second":
            raise SourceError(f"sync_history in {source.label} is not in the second shape.")
    migrations = source.applied_migrations() if isinstance(source, PostgresSource) else None
    return SourceInfo(source.label, source.kind, sorted(tables), shape, migrations)


#: The models an import writes (their auto_now flags are lifted while it runs).
TARGET_MODELS: list[type[models.Model]] = [
    LinearToken,
    ConfluenceToken,
    ProgramIncrement,
    PIFeature,
    PIObjective,
    PIRisk,
    PlanningSession,
    Epic,
    Feature,
    Story,
    Enabler,
    SyncState,
    Conflict,
    SyncHistory,
]


def import_legacy(
    *,
    source_url: str,
    sqlite_file: str | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    source_name: str | None = None,
    progress: Callable[[TableStats], None] | None = None,
) -> ImportReport:
    """Import an old deployment into the new models in one transaction; return the report.

    Raises :class:`LegacyImportError` (nothing written) when rows break the new rules and
    ``skip_invalid`` is false, :class:`~legacy.sources.SourceError` when a source cannot be read.
    ``source_name`` overrides the label the import map files rows under (default: the URL without
    credentials), for an old database that moved host between two runs.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ValueError(f"batch_size must be an integer, not {type(batch_size).__name__}.")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE} (got {batch_size}).")
    report = ImportReport(dry_run=dry_run, skip_invalid=skip_invalid)
    importer = _Importer(report=report, batch_size=batch_size, progress=progress)
    pg = PostgresSource(source_url, itersize=batch_size)
    if source_name:
        pg.label = source_name
    sqlite = SqliteSource(sqlite_file) if sqlite_file else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(pg)
        if sqlite is not None:
            stack.enter_context(sqlite)
        pg_info = _describe(pg)
        report.sources.append(pg_info)
        if sqlite is not None:
            report.sources.append(_describe(sqlite))
        if pg_info.sync_history_shape == "first":
            report.unplaced += UNPLACED_FIRST_SHAPE
        report.unplaced += UNPLACED_ALWAYS
        stack.enter_context(_keep_old_timestamps(TARGET_MODELS))
        with transaction.atomic():
            _run(importer, pg, sqlite, pg_info.sync_history_shape)
            if report.rejected and not skip_invalid:
                raise LegacyImportError(
                    f"{len(report.rejected)} old row(s) break the new rules; nothing was imported "
                    "(fix them in the old database, or pass --skip-invalid to leave them out). First: "
                    + "; ".join(str(note) for note in report.rejected[:5]),
                    report,
                )
            if dry_run:
                transaction.set_rollback(True)
    report.committed = not dry_run
    logger.info(
        "legacy import %s: %d read, %d imported, %d merged, %d skipped, %d already imported",
        "dry run" if dry_run else "committed",
        report.total("read"),
        report.total("imported"),
        report.total("merged"),
        report.total("skipped"),
        report.total("already"),
    )
    return report


def _run(importer: _Importer, pg: PostgresSource, sqlite: SqliteSource | None, shape: str | None) -> None:
    """Every table of both sources, parents first; PostgreSQL before SQLite for the sync tables."""
    pg_tables = pg.tables()
    sqlite_tables = sqlite.tables() if sqlite is not None else {}
    for spec in postgres_specs(shape):
        if spec.table in pg_tables:
            importer.import_table(pg, spec)
        if sqlite is not None and spec in SQLITE_SPECS and spec.table in sqlite_tables:
            importer.import_table(sqlite, spec)
    if sqlite is not None and shape != "second" and "sync_history" in sqlite_tables:
        # The PostgreSQL history (first shape or none) came earlier; the file's is second shape.
        importer.import_table(sqlite, HISTORY)
    if "planning_sessions" in pg_tables:
        importer.epics_from_sessions(pg)
    importer.refresh_conflict_counts()
