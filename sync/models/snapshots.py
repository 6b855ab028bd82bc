"""Three-way sync: what both sides last agreed on per item, and who owns which field.

``ItemSnapshot`` is the base of :func:`sync.merge.three_way`: the item as it was when Linear and
Confluence last agreed (written by ``record_synced`` after a successful sync, and by applying a
resolution). ``FieldOwnership`` rules say which side decides a field path without asking anyone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import connections, models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from accounts.validation import clean_aware_datetime, clean_identifier, clean_text
from config.db import FastLoadMixin
from sync.merge import FIELD_PATH_MAX_LENGTH, clean_field_path, clean_owner
from sync.models.staging import upsert_through_copy
from sync.models.values import ITEM_TYPE_MAX_LENGTH, clean_json

if TYPE_CHECKING:
    from django.db.models.options import Options

#: Ids per query of ``base_for`` (one parameter each: within SQLite's and PostgreSQL's limits).
BASE_FOR_IDS_PER_QUERY = 5000


def item_data_hash(item_data: dict[str, Any]) -> str:
    """The SHA-256 (hex) of ``item_data`` as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(_canonical_json(item_data).encode()).hexdigest()


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --- ItemSnapshot ----------------------------------------------------------------------------------


class ItemSnapshotQuerySet(models.QuerySet["ItemSnapshot"]):
    def for_organization(self, organization_id: str) -> ItemSnapshotQuerySet:
        """Snapshots of one organization (by its Linear organization id)."""
        return self.filter(organization__linear_id=clean_identifier(organization_id, "organization_id"))


class ItemSnapshotManager(models.Manager["ItemSnapshot"]):
    def record_synced(
        self,
        organization_id: str,
        items: Iterable[dict[str, Any]],
        *,
        confluence_page_id: str,
        linear_team_id: str,
        at: dt.datetime | None = None,
        batch_size: int = 5000,
    ) -> int:
        """Record what both sides agreed on after a successful sync; the number of items written.

        ``items``: ``[{"itemId", "itemType", "itemData"}]`` (``itemType`` optional). A bulk upsert on
        (organization, itemId), every item checked before anything is written, all batches in one
        transaction; a repeated ``itemId`` keeps the last. On PostgreSQL each batch is a binary
        ``COPY`` into a temporary table and one ``INSERT … ON CONFLICT``; on SQLite ``bulk_create``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be a positive integer.")
        linear_id = clean_identifier(organization_id, "organization_id")
        page = clean_identifier(confluence_page_id, "confluence_page_id")
        team = clean_identifier(linear_team_id, "linear_team_id")
        at = clean_aware_datetime(at, "at", required=False) or timezone.now()
        rows = _clean_snapshot_items(items)
        if not rows:
            return 0
        connection = connections[self.db]
        with transaction.atomic(using=self.db):
            organization = Organization.objects.db_manager(self.db).ensure(linear_id)
            if connection.vendor == "postgresql":
                _upsert_snapshots_through_copy(connection, organization.pk, page, team, rows, at, batch_size)
                return len(rows)
            objs = [
                ItemSnapshot(
                    organization_id=organization.pk,
                    item_id=item_id,
                    item_type=item_type,
                    confluence_page_id=page,
                    linear_team_id=team,
                    item_data=data,
                    content_hash=hashlib.sha256(text.encode()).hexdigest(),
                    synced_at=at,
                )
                for item_id, item_type, data, text in rows
            ]
            fields = [ItemSnapshot._meta.get_field(name) for name in _SNAPSHOT_COLUMNS]
            batch_size = min(batch_size, connection.ops.bulk_batch_size(fields, objs))
            for start in range(0, len(objs), batch_size):
                self.bulk_create(
                    objs[start : start + batch_size],
                    update_conflicts=True,
                    unique_fields=["organization", "item_id"],
                    update_fields=[
                        name for name in _SNAPSHOT_COLUMNS if name not in ("organization", "item_id")
                    ],
                )
        return len(rows)

    async def arecord_synced(
        self,
        organization_id: str,
        items: Iterable[dict[str, Any]],
        *,
        confluence_page_id: str,
        linear_team_id: str,
        at: dt.datetime | None = None,
        batch_size: int = 5000,
    ) -> int:
        """Async twin of :meth:`record_synced`."""
        return await sync_to_async(self.record_synced)(
            organization_id,
            items,
            confluence_page_id=confluence_page_id,
            linear_team_id=linear_team_id,
            at=at,
            batch_size=batch_size,
        )

    def base_for(self, organization_id: str, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``itemId -> itemData`` of the snapshots of these items (absent ids have no entry).

        One query per 5,000 distinct ids; an unknown organization answers ``{}`` without creating it.
        """
        ids = _clean_item_ids(item_ids)
        linear_id = clean_identifier(organization_id, "organization_id")
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), BASE_FOR_IDS_PER_QUERY):
            chunk = ids[start : start + BASE_FOR_IDS_PER_QUERY]
            found.update(
                self.filter(organization__linear_id=linear_id, item_id__any=chunk)
                .order_by()
                .values_list("item_id", "item_data")
            )
        return found

    async def abase_for(self, organization_id: str, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Async twin of :meth:`base_for`."""
        return await sync_to_async(self.base_for)(organization_id, item_ids)

    def snapshots_for(self, organization_id: str, item_ids: Iterable[str]) -> dict[str, ItemSnapshot]:
        """``itemId -> ItemSnapshot`` (the whole rows: type, page, team, hash, ``synced_at``)."""
        ids = _clean_item_ids(item_ids)
        linear_id = clean_identifier(organization_id, "organization_id")
        found: dict[str, ItemSnapshot] = {}
        for start in range(0, len(ids), BASE_FOR_IDS_PER_QUERY):
            chunk = ids[start : start + BASE_FOR_IDS_PER_QUERY]
            for snapshot in self.filter(organization__linear_id=linear_id, item_id__any=chunk).order_by():
                found[snapshot.item_id] = snapshot
        return found

    async def asnapshots_for(self, organization_id: str, item_ids: Iterable[str]) -> dict[str, ItemSnapshot]:
        """Async twin of :meth:`snapshots_for`."""
        return await sync_to_async(self.snapshots_for)(organization_id, item_ids)


_SNAPSHOT_COLUMNS = (
    "organization",
    "item_id",
    "item_type",
    "confluence_page_id",
    "linear_team_id",
    "item_data",
    "content_hash",
    "synced_at",
)


def _clean_item_ids(item_ids: Any) -> list[str]:
    if isinstance(item_ids, str | bytes | dict):
        raise ValueError("item_ids must be an iterable of ids, not a single value.")
    try:
        iterator = iter(item_ids)
    except TypeError as exc:
        raise ValueError(f"item_ids must be an iterable of ids, not {type(item_ids).__name__}.") from exc
    return list(
        dict.fromkeys(clean_identifier(item_id, f"item_ids[{n}]") for n, item_id in enumerate(iterator))
    )


def _clean_snapshot_items(items: Any) -> list[tuple[str, str, dict[str, Any], str]]:
    """``(itemId, itemType, itemData, canonical JSON)`` per item, sorted by id, duplicates: last wins."""
    if isinstance(items, dict | str | bytes):
        raise ValueError("items must be an iterable of dicts, not a single value.")
    try:
        iterator = iter(items)
    except TypeError as exc:
        raise ValueError(f"items must be an iterable of dicts, not {type(items).__name__}.") from exc
    by_id: dict[str, tuple[str, str, dict[str, Any], str]] = {}
    for position, item in enumerate(iterator):
        name = f"items[{position}]"
        if not isinstance(item, dict):
            raise ValueError(f"{name} must be a dict, not {type(item).__name__}.")
        for key in ("itemId", "itemData"):
            if key not in item:
                raise ValidationError(f"{name} has no '{key}' key.", code="missing_key")
        item_id = clean_identifier(item["itemId"], f"{name}['itemId']")
        item_type = clean_text(
            item.get("itemType") or "", f"{name}['itemType']", required=False, max_length=ITEM_TYPE_MAX_LENGTH
        )
        data = item["itemData"]
        if not isinstance(data, dict):
            raise ValidationError(
                f"{name}['itemData'] must be a JSON object, not {type(data).__name__}.", code="invalid_change"
            )
        try:
            text = _canonical_json(data)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"{name}['itemData'] is not valid JSON: {exc}.", code="invalid_json"
            ) from exc
        except RecursionError as exc:
            raise ValidationError(f"{name}['itemData'] is nested too deeply.", code="invalid_json") from exc
        if "\\u0000" in text or "\x00" in text:
            clean_json(data, f"{name}['itemData']")  # the precise check (and message) for NULs
        by_id[item_id] = (item_id, item_type, data, text)
    # Sorted: concurrent upserts of overlapping items lock rows in the same order (no deadlock).
    return [by_id[key] for key in sorted(by_id)]


#: The session's staging table of ``record_synced`` on PostgreSQL (temporary, dropped at commit).
_SNAPSHOT_UPLOAD_TABLE = "sync_snapshot_upload"


def _concrete_field(opts: Options[Any], name: str) -> models.Field[Any, Any]:
    """The concrete field ``name`` of a model (what raw SQL names by its column)."""
    return cast("models.Field[Any, Any]", opts.get_field(name))


def _dumped(text: str) -> Callable[[Any], str]:
    """A Jsonb dumper that sends JSON text already dumped (no second json.dumps of the value)."""
    return lambda _obj: text


def _upsert_snapshots_through_copy(
    connection: Any,
    organization_pk: int,
    page: str,
    team: str,
    rows: Sequence[tuple[str, str, dict[str, Any], str]],
    at: dt.datetime,
    batch_size: int,
) -> None:
    """PostgreSQL: per batch, binary ``COPY`` to a temporary table, then one ``INSERT … ON CONFLICT``.

    The same pattern as ``LinearIssueCache.upsert_many``: raw SQL because the ORM has no ``COPY``; the
    canonical JSON computed for the hash is sent as the jsonb value (dumped once). The staging steps
    are :func:`sync.models.staging.upsert_through_copy` (errors come out as Django's).
    """
    from psycopg.types.json import Jsonb  # PostgreSQL only

    opts = ItemSnapshot._meta
    quote = connection.ops.quote_name
    table = quote(opts.db_table)
    col = {name: quote(_concrete_field(opts, name).column) for name in _SNAPSHOT_COLUMNS}
    updated = ", ".join(
        f"{col[name]} = EXCLUDED.{col[name]}"
        for name in _SNAPSHOT_COLUMNS
        if name not in ("organization", "item_id")
    )
    staged = ("item_id", "text"), ("item_type", "text"), ("item_data", "jsonb"), ("content_hash", "text")
    upsert_through_copy(
        connection,
        _SNAPSHOT_UPLOAD_TABLE,
        [(col[name], kind) for name, kind in staged],
        rows,
        lambda row: (
            row[0],
            row[1],
            Jsonb(None, dumps=_dumped(row[3])),
            hashlib.sha256(row[3].encode()).hexdigest(),
        ),
        # Names quoted from the model's _meta; the values are parameters.
        lambda staging: (
            f"INSERT INTO {table} ({', '.join(col.values())}) "  # noqa: S608
            f"SELECT %s, {col['item_id']}, {col['item_type']}, %s, %s, {col['item_data']}, "
            f"{col['content_hash']}, %s FROM {staging} ORDER BY {col['item_id']} "
            f"ON CONFLICT ({col['organization']}, {col['item_id']}) DO UPDATE SET {updated}"
        ),
        [organization_pk, page, team, at],
        batch_size,
    )


class ItemSnapshot(FastLoadMixin, models.Model):
    """One item as Linear and Confluence last agreed on it: the base of a three-way merge."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="item_snapshots")
    item_id = models.CharField(max_length=255, help_text="The agent's itemId.")
    item_type = models.CharField(max_length=ITEM_TYPE_MAX_LENGTH, blank=True, default="")
    confluence_page_id = models.CharField(max_length=255, blank=True, default="")
    linear_team_id = models.CharField(max_length=255, blank=True, default="")
    item_data = models.JSONField(default=dict)
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of itemData as canonical JSON.")
    synced_at = models.DateTimeField(default=timezone.now)

    objects = ItemSnapshotManager.from_queryset(ItemSnapshotQuerySet)()

    class Meta:
        verbose_name = "item snapshot"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "item_id"], name="sync_itemsnapshot_org_item_uniq"
            ),
            models.CheckConstraint(condition=~Q(item_id=""), name="sync_itemsnapshot_item_id_not_empty"),
        ]

    def __str__(self) -> str:
        return self.item_id


# --- FieldOwnership --------------------------------------------------------------------------------


class FieldOwner(models.TextChoices):
    LINEAR = "linear", "Linear decides"
    CONFLUENCE = "confluence", "Confluence decides"
    NEWEST = "newest", "The newest change decides"


class FieldOwnershipQuerySet(models.QuerySet["FieldOwnership"]):
    def for_organization(self, organization_id: str) -> FieldOwnershipQuerySet:
        """Rules of one organization (by its Linear organization id)."""
        return self.filter(organization__linear_id=clean_identifier(organization_id, "organization_id"))

    def applicable(
        self, *, item_type: str = "", confluence_page_id: str = "", linear_team_id: str = ""
    ) -> FieldOwnershipQuerySet:
        """Rules that apply to an item of this type, page and team (a blank narrowing matches all)."""
        item_type = clean_text(item_type, "item_type", required=False, max_length=ITEM_TYPE_MAX_LENGTH)
        page = clean_identifier(confluence_page_id, "confluence_page_id", required=False)
        team = clean_identifier(linear_team_id, "linear_team_id", required=False)
        return self.filter(
            Q(item_type="") | Q(item_type=item_type),
            Q(confluence_page_id="") | Q(confluence_page_id=page),
            Q(linear_team_id="") | Q(linear_team_id=team),
        )


class FieldOwnershipManager(models.Manager["FieldOwnership"]):
    def get_queryset(self) -> FieldOwnershipQuerySet:
        return FieldOwnershipQuerySet(self.model, using=self._db)

    def owners_for(
        self,
        organization_id: str,
        *,
        item_type: str = "",
        confluence_page_id: str = "",
        linear_team_id: str = "",
    ) -> dict[str, str]:
        """``field path -> owner`` for an item: per path, the most specific applicable rule wins.

        Specificity: the number of narrowings a rule has (type, page, team); between rules with as many,
        team beats page beats type. One query; an unknown organization has no rules.
        """
        rules = self.get_queryset().for_organization(organization_id)
        return self._owners_among(rules, item_type, confluence_page_id, linear_team_id)

    def owners_for_pk(
        self,
        organization_pk: int,
        *,
        item_type: str = "",
        confluence_page_id: str = "",
        linear_team_id: str = "",
    ) -> dict[str, str]:
        """:meth:`owners_for` by the Organization row's primary key (what a Conflict holds)."""
        rules = self.get_queryset().filter(organization_id=organization_pk)
        return self._owners_among(rules, item_type, confluence_page_id, linear_team_id)

    @staticmethod
    def _owners_among(rules: FieldOwnershipQuerySet, item_type: str, page: str, team: str) -> dict[str, str]:
        """Body of :meth:`owners_for` and :meth:`owners_for_pk`: ``rules`` is one organization's rules."""
        rules = rules.applicable(item_type=item_type, confluence_page_id=page, linear_team_id=team)
        return owners_from_rules(rules.order_by().values_list(*_RULE_COLUMNS))

    async def aowners_for_pk(
        self,
        organization_pk: int,
        *,
        item_type: str = "",
        confluence_page_id: str = "",
        linear_team_id: str = "",
    ) -> dict[str, str]:
        """Async twin of :meth:`owners_for_pk`."""
        return await sync_to_async(self.owners_for_pk)(
            organization_pk,
            item_type=item_type,
            confluence_page_id=confluence_page_id,
            linear_team_id=linear_team_id,
        )

    def rules_for_pair(
        self, organization_id: str, *, confluence_page_id: str, linear_team_id: str
    ) -> list[tuple[str, str, str, str, str]]:
        """Every rule that may apply on this (page, team), any item type: one query, for bulk work.

        Pass the rows and an item type to :func:`owners_from_rules` to get that type's owners.
        """
        rules = (
            self.get_queryset()
            .for_organization(organization_id)
            .filter(
                Q(confluence_page_id="") | Q(confluence_page_id=confluence_page_id),
                Q(linear_team_id="") | Q(linear_team_id=linear_team_id),
            )
        )
        return list(rules.order_by().values_list(*_RULE_COLUMNS))

    async def arules_for_pair(
        self, organization_id: str, *, confluence_page_id: str, linear_team_id: str
    ) -> list[tuple[str, str, str, str, str]]:
        """Async twin of :meth:`rules_for_pair`."""
        return await sync_to_async(self.rules_for_pair)(
            organization_id, confluence_page_id=confluence_page_id, linear_team_id=linear_team_id
        )

    async def aowners_for(
        self,
        organization_id: str,
        *,
        item_type: str = "",
        confluence_page_id: str = "",
        linear_team_id: str = "",
    ) -> dict[str, str]:
        """Async twin of :meth:`owners_for`."""
        return await sync_to_async(self.owners_for)(
            organization_id,
            item_type=item_type,
            confluence_page_id=confluence_page_id,
            linear_team_id=linear_team_id,
        )

    def set_owner(
        self,
        organization_id: str,
        field_path: str,
        owner: str,
        *,
        item_type: str = "",
        confluence_page_id: str = "",
        linear_team_id: str = "",
    ) -> FieldOwnership:
        """Create or change the rule for this path and narrowing (an upsert); returns the rule."""
        path = clean_field_path(field_path)
        owner = clean_owner(owner)
        item_type = clean_text(item_type, "item_type", required=False, max_length=ITEM_TYPE_MAX_LENGTH)
        page = clean_identifier(confluence_page_id, "confluence_page_id", required=False)
        team = clean_identifier(linear_team_id, "linear_team_id", required=False)
        with transaction.atomic():
            organization = Organization.objects.ensure(organization_id)
            rule, _ = self.update_or_create(
                organization=organization,
                item_type=item_type,
                confluence_page_id=page,
                linear_team_id=team,
                field_path=path,
                defaults={"owner": owner, "updated_at": timezone.now()},
            )
        return rule

    async def aset_owner(
        self,
        organization_id: str,
        field_path: str,
        owner: str,
        *,
        item_type: str = "",
        confluence_page_id: str = "",
        linear_team_id: str = "",
    ) -> FieldOwnership:
        """Async twin of :meth:`set_owner`."""
        return await sync_to_async(self.set_owner)(
            organization_id,
            field_path,
            owner,
            item_type=item_type,
            confluence_page_id=confluence_page_id,
            linear_team_id=linear_team_id,
        )


_RULE_COLUMNS = ("field_path", "item_type", "confluence_page_id", "linear_team_id", "owner")


def owners_from_rules(
    rules: Iterable[tuple[str, str, str, str, str]], *, item_type: str | None = None
) -> dict[str, str]:
    """``path -> owner`` from rule rows ``(path, item_type, page, team, owner)``: the most specific wins.

    ``item_type`` given: rules narrowed to another type are left out (the rows already match the page
    and team). Specificity: the number of narrowings; between as many, team beats page beats type.
    """
    chosen: dict[str, tuple[tuple[int, bool, bool, bool], str]] = {}
    for path, rule_type, page, team, owner in rules:
        if item_type is not None and rule_type and rule_type != item_type:
            continue
        rank = (bool(rule_type) + bool(page) + bool(team), bool(team), bool(page), bool(rule_type))
        if path not in chosen or rank > chosen[path][0]:
            chosen[path] = (rank, owner)
    return {path: chosen[path][1] for path in sorted(chosen)}


class FieldOwnership(models.Model):
    """A rule: in this organization (optionally only for an item type, a page, a team) a side owns a field."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="field_ownerships")
    item_type = models.CharField(
        max_length=ITEM_TYPE_MAX_LENGTH, blank=True, default="", help_text="Empty: every item type."
    )
    confluence_page_id = models.CharField(
        max_length=255, blank=True, default="", help_text="Empty: every page."
    )
    linear_team_id = models.CharField(max_length=255, blank=True, default="", help_text="Empty: every team.")
    field_path = models.CharField(
        max_length=FIELD_PATH_MAX_LENGTH, help_text="A dotted itemData path: title, state.name (and below)."
    )
    owner = models.CharField(max_length=16, choices=FieldOwner.choices)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = FieldOwnershipManager.from_queryset(FieldOwnershipQuerySet)()

    class Meta:
        verbose_name = "field ownership rule"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "item_type", "confluence_page_id", "linear_team_id", "field_path"],
                name="sync_fieldownership_scope_path_uniq",
            ),
            models.CheckConstraint(
                condition=Q(owner__in=FieldOwner.values), name="sync_fieldownership_owner_valid"
            ),
            models.CheckConstraint(condition=~Q(field_path=""), name="sync_fieldownership_path_not_empty"),
        ]

    def __str__(self) -> str:
        scope = " ".join(
            part for part in (self.item_type, self.confluence_page_id, self.linear_team_id) if part
        )
        return f"{self.field_path} → {self.owner}" + (f" ({scope})" if scope else "")

    def clean(self) -> None:
        """Friendly messages for the admin form: a dotted path and a known owner."""
        errors: dict[str, list[str]] = {}
        for attr, check in (("field_path", clean_field_path), ("owner", clean_owner)):
            try:
                check(getattr(self, attr), attr)
            except (ValidationError, ValueError) as exc:
                errors[attr] = [exc.messages[0] if isinstance(exc, ValidationError) else str(exc)]
        if errors:
            raise ValidationError(errors)
