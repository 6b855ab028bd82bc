"""The import map: where every row of an old deployment went.

One ``ImportedRow`` per old row that the import placed (imported, or merged into another row). It makes
a second run of ``import_legacy`` a no-op (a mapped row is never imported again), lets children find
their new parent, and tells operators where a row went and whether its id changed.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class ImportAction(models.TextChoices):
    IMPORTED = "imported", "Imported as a new row"
    MERGED = "merged", "Merged into an existing row (a duplicate, or older than it)"
    REPLACED = "replaced", "Replaced an existing row's values (newer than it)"


class ImportSource(models.Model):
    """One old database an import read: a PostgreSQL database or a SQLite sync file."""

    label = models.CharField(
        max_length=255,
        help_text="postgresql://host:port/db (no credentials), sqlite:///path, or the --source-name given.",
    )
    kind = models.CharField(max_length=16, help_text="postgresql or sqlite")
    created_at = models.DateTimeField(default=timezone.now)
    last_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "import source"
        constraints = [
            models.UniqueConstraint(fields=["label"], name="legacy_importsource_label_uniq"),
        ]

    def __str__(self) -> str:
        return self.label


class ImportedRowQuerySet(models.QuerySet["ImportedRow"]):
    def for_table(self, source_id: int, old_table: str) -> ImportedRowQuerySet:
        """Map entries of one old table of one source."""
        return self.filter(source_id=source_id, old_table=old_table)

    def new_pks(self, source_id: int, old_table: str, old_ids: list[str]) -> dict[str, str]:
        """``{old id: new pk}`` of the given old ids that are mapped (as text)."""
        return dict(
            self.for_table(source_id, old_table).filter(old_id__in=old_ids).values_list("old_id", "new_pk")
        )


class ImportedRow(models.Model):
    """One old row and the new row it became (or was merged into)."""

    # The natural key is the primary key: a table with a row per old row then maintains one index
    # per insert, not two, and needs no sequence.
    pk = models.CompositePrimaryKey("old_table", "old_id", "source")
    # A key rather than the label, so that the unique index of a table with a row per old row stays
    # narrow. No database constraint: it would queue one deferred check per imported row, checked at
    # commit, for a parent the import itself creates first; PROTECT still guards deletes in the ORM.
    source = models.ForeignKey(
        ImportSource, on_delete=models.PROTECT, related_name="rows", db_index=False, db_constraint=False
    )
    old_table = models.CharField(max_length=64)
    old_id = models.CharField(max_length=255)
    model = models.CharField(max_length=100, help_text="The new model, as app_label.ModelName.")
    new_pk = models.CharField(max_length=255)
    action = models.CharField(max_length=16, choices=ImportAction.choices, default=ImportAction.IMPORTED)
    id_changed = models.BooleanField(
        default=False, help_text="The old id was taken in the target, so the row got a new one."
    )
    data = models.JSONField(
        default=dict,
        blank=True,
        help_text="Old values that have no place in the new row (a merged duplicate, dropped columns).",
    )
    imported_at = models.DateTimeField(default=timezone.now)

    objects = ImportedRowQuerySet.as_manager()

    class Meta:
        verbose_name = "imported row"
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=ImportAction.values), name="legacy_importedrow_action_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.old_table} {self.old_id} → {self.model} {self.new_pk} ({self.action})"
