"""ConflictResolution: append-only through the API."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from sync.models import AppendOnlyError, ConflictResolution
from tests.factories import make_conflict, make_conflict_resolution

pytestmark = pytest.mark.django_db


def test_an_existing_entry_cannot_be_saved_again():
    entry = make_conflict_resolution(strategy="linear")
    entry.strategy = "confluence"
    with pytest.raises(AppendOnlyError, match="append-only"):
        entry.save()
    assert ConflictResolution.objects.get().strategy == "linear"


def test_an_entry_cannot_be_deleted():
    entry = make_conflict_resolution()
    with pytest.raises(AppendOnlyError, match="append-only"):
        entry.delete()
    assert ConflictResolution.objects.count() == 1


def test_queryset_update_and_delete_are_refused():
    make_conflict_resolution()
    with pytest.raises(AppendOnlyError):
        ConflictResolution.objects.all().update(strategy="manual")
    with pytest.raises(AppendOnlyError):
        ConflictResolution.objects.filter(action="resolved").delete()
    assert ConflictResolution.objects.values_list("strategy", flat=True).get() == "linear"


def test_deleting_the_operator_keeps_the_entry_without_a_user(operator):
    make_conflict(id="c1").resolve("linear", by=operator)

    get_user_model().objects.filter(pk=operator.pk).delete()

    entry = ConflictResolution.objects.get()
    assert (entry.conflict_id, entry.by_id) == ("c1", None)


def test_for_conflict_lists_oldest_first_even_after_the_conflict_is_gone(clock):
    conflict = make_conflict(id="c1")
    conflict.resolve("linear")
    clock.advance(minutes=1)
    conflict.reopen()
    clock.advance(minutes=1)
    conflict.resolve("confluence")
    make_conflict(id="c2").resolve("linear")
    conflict.__class__.objects.clear()

    assert [(e.action, e.strategy) for e in ConflictResolution.objects.for_conflict("c1")] == [
        ("resolved", "linear"),
        ("reopened", ""),
        ("resolved", "confluence"),
    ]


def test_database_refuses_a_resolved_entry_without_a_strategy():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        ConflictResolution.objects.create(conflict_id="c1", action="resolved", strategy="")
    with pytest.raises(IntegrityError), transaction.atomic():
        ConflictResolution.objects.create(conflict_id="c1", action="archived", strategy="")
