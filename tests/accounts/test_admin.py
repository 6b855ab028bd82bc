"""Token and organization admin: masked hints only, write-only replacement, permission-gated."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ConfluenceToken, LinearToken
from tests.accounts.conftest import NEW_KEY, OTHER_KEY
from tests.factories import make_confluence_token, make_linear_token, make_organization

pytestmark = pytest.mark.django_db

ACCESS = "admin_access_PLAINTEXT_wxyz"
REFRESH = "admin_refresh_PLAINTEXT_qrst"


@pytest.fixture
def linear_token() -> LinearToken:
    organization = make_organization(linear_id="org-admin", name="Admin Org")
    return make_linear_token(organization=organization, access_token=ACCESS, refresh_token=REFRESH)


@pytest.fixture
def confluence_token() -> ConfluenceToken:
    return make_confluence_token(access_token=ACCESS, refresh_token=REFRESH, cloud_id="cloud-admin")


def staff_client(*permissions: str) -> Client:
    user = get_user_model().objects.create_user(username="staff", password="irrelevant", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def assert_no_plaintext(html: str) -> None:
    assert ACCESS not in html and REFRESH not in html
    assert "PLAINTEXT" not in html


@pytest.mark.parametrize(
    ("fixture", "url_name"),
    [("linear_token", "admin:accounts_lineartoken"), ("confluence_token", "admin:accounts_confluencetoken")],
)
def test_superuser_sees_masked_hints_and_never_the_token(
    admin_client: Client, request: Any, fixture: str, url_name: str
) -> None:
    token = request.getfixturevalue(fixture)

    changelist = admin_client.get(reverse(f"{url_name}_changelist"))
    change = admin_client.get(reverse(f"{url_name}_change", args=[token.pk]))

    for response in (changelist, change):
        assert response.status_code == 200
        html = response.content.decode()
        assert "••••wxyz" in html and "••••qrst" in html
        assert "valid" in html
        assert_no_plaintext(html)
    assert str(token.organization) in changelist.content.decode()
    assert 'name="new_access_token"' in change.content.decode()
    assert 'type="password"' in change.content.decode()


def test_changelist_is_not_searchable_by_token(admin_client: Client, linear_token: LinearToken) -> None:
    url = reverse("admin:accounts_lineartoken_changelist")
    by_token = admin_client.get(url, {"q": ACCESS})
    by_owner = admin_client.get(url, {"q": "org-admin"})

    assert list(by_token.context["cl"].result_list) == []
    assert [row.pk for row in by_owner.context["cl"].result_list] == [linear_token.pk]


def test_expiry_state_filter(admin_client: Client) -> None:
    now = timezone.now()
    expired = make_linear_token(expires_at=now - dt.timedelta(hours=1))
    expiring = make_linear_token(expires_at=now + dt.timedelta(hours=3))
    valid = make_linear_token(expires_at=now + dt.timedelta(days=3))
    url = reverse("admin:accounts_lineartoken_changelist")

    def pks(state: str) -> list[int]:
        return [row.pk for row in admin_client.get(url, {"state": state}).context["cl"].result_list]

    assert (pks("expired"), pks("expiring"), pks("valid")) == ([expired.pk], [expiring.pk], [valid.pk])


def test_changelist_query_count_does_not_grow_with_rows(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    url = reverse("admin:accounts_lineartoken_changelist")
    for _ in range(3):
        make_linear_token()
    admin_client.get(url)
    with django_assert_max_num_queries(10) as few:
        admin_client.get(url)
    for _ in range(20):
        make_linear_token()
    with django_assert_max_num_queries(len(few.captured_queries)):
        admin_client.get(url)


def linear_change_form(token: LinearToken, **fields: str) -> dict[str, Any]:
    """POST data of the Linear token's change form: its own values, a 2031 expiry, then ``fields``."""
    return {
        "organization": token.organization_id,
        "app_user_id": token.app_user_id,
        "expires_at_0": "2031-01-02",
        "expires_at_1": "03:04:05",
        **fields,
    }


def test_superuser_replaces_a_token_and_history_holds_no_value(
    admin_client: Client, linear_token: LinearToken
) -> None:
    url = reverse("admin:accounts_lineartoken_change", args=[linear_token.pk])
    new_access = "replaced_access_SECRET_9z9z"
    response = admin_client.post(
        url,
        linear_change_form(linear_token, scope="read", new_access_token=new_access, new_refresh_token=""),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    row = LinearToken.objects.get(pk=linear_token.pk)
    assert (row.access_token, row.refresh_token, row.scope) == (new_access, REFRESH, "read")
    entry = LogEntry.objects.get(object_id=str(linear_token.pk))
    assert "Replace access token" in entry.get_change_message()
    for text in (entry.change_message, entry.object_repr, entry.get_change_message()):
        assert new_access not in text and ACCESS not in text and REFRESH not in text
    page = admin_client.get(url).content.decode()
    assert "••••9z9z" in page and new_access not in page


def test_an_empty_replacement_keeps_the_tokens(admin_client: Client, linear_token: LinearToken) -> None:
    url = reverse("admin:accounts_lineartoken_change", args=[linear_token.pk])
    response = admin_client.post(
        url,
        linear_change_form(
            linear_token, app_user_id="another-user", scope="", new_access_token="", new_refresh_token=""
        ),
    )
    assert response.status_code == 302
    row = LinearToken.objects.get(pk=linear_token.pk)
    assert (row.access_token, row.refresh_token, row.app_user_id) == (ACCESS, REFRESH, "another-user")


def test_an_invalid_replacement_is_refused_without_echoing_it(
    admin_client: Client, linear_token: LinearToken
) -> None:
    url = reverse("admin:accounts_lineartoken_change", args=[linear_token.pk])
    bad = "fernet:looks_like_SECRET_ciphertext"
    response = admin_client.post(
        url,
        linear_change_form(linear_token, new_access_token=bad),
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "The access token is not valid" in html
    assert bad not in html
    assert LinearToken.objects.get(pk=linear_token.pk).access_token == ACCESS


def test_superuser_adds_a_token(admin_client: Client) -> None:
    organization = make_organization(linear_id="org-added")
    response = admin_client.post(
        reverse("admin:accounts_confluencetoken_add"),
        {
            "organization": organization.pk,
            "cloud_id": "cloud-new",
            "site_url": "https://new.atlassian.net",
            "expires_at_0": "2031-01-02",
            "expires_at_1": "03:04:05",
            "new_access_token": "added_access_token_1234",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    token = ConfluenceToken.objects.for_organization("org-added", cloud_id="cloud-new")
    assert (token.access_token, token.refresh_token) == ("added_access_token_1234", None)


def test_undecryptable_tokens_show_as_such_without_breaking_pages(
    admin_client: Client, settings: Any, linear_token: LinearToken
) -> None:
    settings.FERNET_KEYS = [OTHER_KEY]
    lost = make_linear_token()
    settings.FERNET_KEYS = [NEW_KEY]  # neither the fixture's key nor OTHER_KEY

    changelist = admin_client.get(reverse("admin:accounts_lineartoken_changelist"))
    change = admin_client.get(reverse("admin:accounts_lineartoken_change", args=[lost.pk]))

    assert changelist.status_code == change.status_code == 200
    assert changelist.content.decode().count("cannot be decrypted") == 4  # two tokens of two rows
    assert "cannot be decrypted" in change.content.decode()


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:accounts_lineartoken_changelist",
        "admin:accounts_confluencetoken_changelist",
        "admin:accounts_organization_changelist",
    ],
)
def test_staff_without_accounts_permissions_gets_403(url_name: str) -> None:
    make_linear_token()
    assert staff_client().get(reverse(url_name)).status_code == 403


def test_staff_with_view_permission_sees_hints_but_cannot_replace(linear_token: LinearToken) -> None:
    client = staff_client("view_lineartoken")
    changelist = client.get(reverse("admin:accounts_lineartoken_changelist"))
    change = client.get(reverse("admin:accounts_lineartoken_change", args=[linear_token.pk]))

    assert changelist.status_code == change.status_code == 200
    assert "••••wxyz" in changelist.content.decode()
    assert "new_access_token" not in change.content.decode()
    assert_no_plaintext(change.content.decode())
    assert client.get(reverse("admin:accounts_lineartoken_add")).status_code == 403


def test_staff_with_change_permission_cannot_replace_a_token(linear_token: LinearToken) -> None:
    client = staff_client("view_lineartoken", "change_lineartoken")
    url = reverse("admin:accounts_lineartoken_change", args=[linear_token.pk])
    response = client.post(
        url,
        linear_change_form(
            linear_token, app_user_id="changed-by-staff", new_access_token="smuggled_token_abcd"
        ),
    )
    assert response.status_code == 302
    row = LinearToken.objects.get(pk=linear_token.pk)
    assert (row.app_user_id, row.access_token) == ("changed-by-staff", ACCESS)


def test_organization_admin_shows_each_token_status(admin_client: Client) -> None:
    now = timezone.now()
    expired = make_organization(linear_id="org-a-expired")
    make_linear_token(organization=expired, expires_at=now - dt.timedelta(minutes=1))
    expiring = make_organization(linear_id="org-b-expiring")
    make_linear_token(organization=expiring, expires_at=now + dt.timedelta(hours=2))
    make_confluence_token(organization=expiring, expires_at=now + dt.timedelta(days=9))
    make_confluence_token(organization=expiring, expires_at=now - dt.timedelta(days=1))
    valid = make_organization(linear_id="org-c-valid")
    make_linear_token(organization=valid, expires_at=now + dt.timedelta(days=2))
    make_organization(linear_id="org-d-none")

    response = admin_client.get(reverse("admin:accounts_organization_changelist"))

    assert response.status_code == 200
    admin_obj = response.context["cl"].model_admin
    rows = {
        org.linear_id: (admin_obj.linear_token_status(org), admin_obj.confluence_token_status(org))
        for org in response.context["cl"].result_list
    }
    assert rows == {
        "org-a-expired": ("expired", "none"),
        "org-b-expiring": ("expiring within 24h", "expired"),
        "org-c-valid": ("valid", "none"),
        "org-d-none": ("none", "none"),
    }
    change = admin_client.get(reverse("admin:accounts_organization_change", args=[expiring.pk]))
    assert change.status_code == 200
    assert "expiring within 24h" in change.content.decode()


def test_expiry_state_filter_selects_each_state_in_sql(admin_client: Client) -> None:
    now = timezone.now()
    expired = make_linear_token(expires_at=now - dt.timedelta(minutes=5))
    expiring = make_linear_token(expires_at=now + dt.timedelta(hours=3))
    valid = make_linear_token(expires_at=now + dt.timedelta(days=3))
    url = reverse("admin:accounts_lineartoken_changelist")

    def listed(query: str) -> set[int]:
        response = admin_client.get(f"{url}{query}")
        assert response.status_code == 200
        return {token.pk for token in response.context["cl"].result_list}

    assert listed("?state=expired") == {expired.pk}
    assert listed("?state=expiring") == {expiring.pk}
    assert listed("?state=valid") == {valid.pk}
    assert listed("") == {expired.pk, expiring.pk, valid.pk}


# --- re-authorization ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_name", "make"), [("lineartoken", make_linear_token), ("confluencetoken", make_confluence_token)]
)
def test_reauthorization_filter_and_column(admin_client: Client, url_name: str, make: Any) -> None:
    from django.utils import timezone

    at = timezone.now().replace(microsecond=0)
    marked = make(reauthorization_required_at=at)
    fine = make()
    url = reverse(f"admin:accounts_{url_name}_changelist")

    def listed(value: str | None) -> set[int]:
        response = admin_client.get(url, {"reauthorization": value} if value else {})
        return {row.pk for row in response.context["cl"].result_list}

    assert listed("required") == {marked.pk}
    assert listed("not_required") == {fine.pk}
    assert listed(None) == {marked.pk, fine.pk}
    page = admin_client.get(url).content.decode()
    assert f"required since {at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" in page
    change = admin_client.get(reverse(f"admin:accounts_{url_name}_change", args=[marked.pk])).content.decode()
    assert "required since" in change
