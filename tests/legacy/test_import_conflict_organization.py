"""The legacy import gives old conflicts the organization their (page, team) sync state knows (issue 16)."""

from __future__ import annotations

import pytest

from accounts.models import Organization
from legacy.services import import_legacy
from sync.models import Conflict
from tests.factories import make_change
from tests.legacy import old_data as od
from tests.legacy.old_data import ORG_U

pytestmark = pytest.mark.django_db


def test_imported_conflicts_get_the_organization_of_their_pairs_sync_state(old_db):
    od.fill_first_shape(old_db.conn)
    import_legacy(source_url=old_db.url)
    org_u = Organization.objects.get(linear_id=ORG_U)
    imported = list(Conflict.objects.order_by("pk").values_list("pk", "organization_id"))
    assert imported
    assert all(organization == org_u.pk for _, organization in imported)


def test_fill_organizations_leaves_conflicts_whose_pair_has_no_organization():
    from sync.models import SyncState
    from tests.factories import make_organization

    organization = make_organization(linear_id="org-a")
    SyncState.objects.create(confluence_page_id="p1", linear_team_id="t1", organization=organization)
    SyncState.objects.create(confluence_page_id="p2", linear_team_id="t2")
    for page, team, item in (("p1", "t1", "a"), ("p2", "t2", "b")):
        Conflict.objects.store(
            f"conflict-{item}",
            linear_change=make_change("linear", itemId=item),
            confluence_change=make_change("confluence", itemId=item),
            confluence_page_id=page,
            linear_team_id=team,
        )
    Conflict.objects.store(
        "conflict-c",
        linear_change=make_change("linear", itemId="c"),
        confluence_change=make_change("confluence", itemId="c"),
    )
    # store() now takes the pair's organization itself; rows imported from the old system have none.
    Conflict.objects.update(organization=None)
    assert Conflict.objects.all().fill_organizations() == 1
    assert dict(Conflict.objects.values_list("pk", "organization__linear_id")) == {
        "conflict-a": "org-a",
        "conflict-b": None,
        "conflict-c": None,
    }
