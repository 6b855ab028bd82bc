"""Every public method of the conflict, resolution-log, snapshot and ownership API has an async twin.

Exceptions, each for a stated reason: methods returning a lazy QuerySet (chain them, evaluate with
``async for``/``acount()``), pure methods that never touch the database, and the log's refusals.
"""

from __future__ import annotations

import inspect

import pytest
from asgiref.sync import async_to_sync

from sync.models import Conflict, ConflictResolution, FieldOwnership, ItemSnapshot
from tests.test_docs_api import _public_methods

#: Return lazy QuerySets: no twin needed (docs/api.md says so).
QUERYSET_METHODS = {
    "for_pair", "unresolved", "resolved", "for_organization", "for_conflict", "applicable",
    "owned_by", "visible_to",
}  # fmt: skip
# The resolution outbox's lazy QuerySets (sync.models.outbox).
QUERYSET_METHODS |= {"awaiting_application", "due_for_application", "applied", "failing_to_apply"}
#: No database access at all.
PURE_METHODS = {"item_data_diff", "pair"}
#: Django's own overrides, or the append-only log's refusals.
NOT_API = {"save", "delete", "update", "clean", "get_queryset"}


@pytest.mark.parametrize(
    "model", [Conflict, ConflictResolution, ItemSnapshot, FieldOwnership], ids=lambda m: m.__name__
)
def test_every_public_method_has_an_async_twin(model):
    owners = [type(model._default_manager), type(model._default_manager.get_queryset()), model]
    names = set().union(*(_public_methods(owner) for owner in owners))
    sync_names = {name for name in names if not name.startswith("a") or f"{name[1:]}" not in names}
    missing = []
    for name in sorted(sync_names - QUERYSET_METHODS - PURE_METHODS - NOT_API):
        twin = f"a{name}"
        # (Django's manager copies a QuerySet's async method as a plain function returning the coroutine.)
        if not any(inspect.iscoroutinefunction(getattr(owner, twin, None)) for owner in owners):
            missing.append(name)
    assert not missing, f"{model.__name__}: no async twin for {missing}"


@pytest.mark.django_db(transaction=True)
def test_remaining_twins_return_what_the_sync_methods_do():
    FieldOwnership.objects.set_owner("org-a", "title", "linear", confluence_page_id="p")
    organization_pk = FieldOwnership.objects.get().organization_id
    assert async_to_sync(FieldOwnership.objects.aowners_for_pk)(organization_pk, confluence_page_id="p") == {
        "title": "linear"
    }
    rules = async_to_sync(FieldOwnership.objects.arules_for_pair)(
        "org-a", confluence_page_id="p", linear_team_id="t"
    )
    assert rules == [("title", "", "p", "", "linear")]
    conflict = Conflict.objects.store(
        "conflict-x",
        linear_change={"itemId": "x", "source": "linear", "itemData": {"t": 1}},
        confluence_change={"itemId": "x", "source": "confluence", "itemData": {"t": 2}},
    )
    assert async_to_sync(conflict.aconflict_paths)() == ["t"]
    assert async_to_sync(Conflict.objects.all().afill_organizations)() == 0
