"""The admin fed junk through the test client: every add/change form, the conflict manual resolution,
changelist search, filters, ordering and paging. A 200 with errors, a redirect or a 4xx; never a 500.

The test client re-raises any exception a view lets escape, so a 500 fails the test with its traceback.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from accounts.models import Organization
from planning.models import Feature
from sync.models import Conflict, ConflictResolution
from tests.reliability.strategies import FUZZ, NUL_TEXT

pytestmark = pytest.mark.django_db

#: Few examples per test: every example is a full admin request. No shrinking: shrinking a failing admin
#: POST with 70,000-character values takes many minutes; the unshrunk example is reported as it is.
ADMIN_FUZZ = settings(FUZZ, max_examples=10, phases=[Phase.explicit, Phase.reuse, Phase.generate])

#: Over-long for every column (255, 1000) but under SQLite's 50,000-byte LIKE pattern limit, which a
#: search term reaches (test_huge_search_term_is_not_a_500 covers that separately).
LONG_TEXT = st.builds(
    lambda char, n: char * n, st.sampled_from(["a", "é", "\x00"]), st.sampled_from([256, 1001, 3000])
)
JUNK = st.one_of(
    st.text(max_size=30),
    NUL_TEXT,
    LONG_TEXT,
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "9" * 40,
            "1e309",
            "NaN",
            "2026-13-45",
            "25:61:00",
            "{",
            "[]",
            "null",
            '{"a": ',
            "true",
            "javascript:alert(1)",
            "<script>alert(1)</script>",
            "../../etc/passwd",
        ]
    ),
)
OK_STATUSES = {200, 302, 400, 403, 404}


def admin_forms() -> list[tuple[type, str]]:
    """(model, 'add' or 'change') for every registered admin; the view decides what it allows."""
    return [(model, view) for model in admin.site._registry for view in ("add", "change")]


def form_url(model: type, view: str) -> str:
    info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    if view == "add":
        return reverse(f"{info}_add")
    return reverse(f"{info}_change", args=[quote(model._default_manager.order_by("pk").first().pk)])


def field_names(client: Client, url: str) -> tuple[list[str], dict[str, str]]:
    """The admin form's input names (main form and inline rows) and the inline management values.

    The management form (TOTAL_FORMS, ...) is sent valid: Django already caps it, and junk there only
    makes Django build up to 1,000 empty inline forms per request, which slows the test and proves nothing.
    """
    page = client.get(url)
    if page.status_code != 200 or "adminform" not in (page.context or {}):
        return [], {}
    names = list(page.context["adminform"].form.fields)
    management: dict[str, str] = {}
    for inline in page.context.get("inline_admin_formsets", []):
        formset = inline.formset
        management |= {f"{formset.prefix}-TOTAL_FORMS": "1", f"{formset.prefix}-INITIAL_FORMS": "0"}
        names += [f"{formset.prefix}-0-{name}" for name in formset.empty_form.fields]
    return names, management


#: The apps whose rows a junk admin request could touch (the project's and auth's users and groups).
WATCHED_APPS = {"accounts", "planning", "sync", "auth"}


def all_rows() -> dict[str, list[tuple]]:
    """Every row of every watched model (many-to-many tables too), by model label."""
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values_list())
        for model in apps.get_models(include_auto_created=True)
        if model._meta.app_label in WATCHED_APPS
    }


def changed_models(before: dict[str, list[tuple]]) -> set[str]:
    """The labels of the models whose rows differ from ``before``."""
    after = all_rows()
    return {label for label, rows in before.items() if after[label] != rows}


def saved_models(model: type) -> set[str]:
    """What saving ``model``'s admin form may write: the model, its inlines' models, its m2m tables."""
    written = [model, *(inline.model for inline in admin.site._registry[model].inlines)]
    written += [field.remote_field.through for field in model._meta.many_to_many]
    return {m._meta.label for m in written}


def form_cases() -> list[Any]:
    return [pytest.param(model, view, id=f"{model.__name__}-{view}") for model, view in admin_forms()]


@pytest.mark.parametrize(("model", "view"), form_cases())
def test_admin_form_with_junk_values_never_500s(model, view, world, clients):
    client = clients["superuser"]
    url = form_url(model, view)
    names, management = field_names(client, url)

    @ADMIN_FUZZ
    @given(values=st.fixed_dictionaries(dict.fromkeys(names, JUNK)))
    def post_junk(values: dict[str, Any]) -> None:
        before = all_rows()
        response = client.post(url, {**values, **management})
        assert response.status_code in OK_STATUSES
        # A refused form writes nothing; a saved one writes only its own model's rows.
        allowed = saved_models(model) if response.status_code == 302 else set()
        assert changed_models(before) <= allowed, response.status_code

    post_junk()
    if not names:
        # A read-only screen or one without a model form: a POST is refused or shows the page again.
        assert client.post(url, {"x": "y"}).status_code in {200, 403, 405}


@ADMIN_FUZZ
@given(
    change=st.one_of(
        st.text(max_size=40),
        NUL_TEXT,
        LONG_TEXT,
        st.sampled_from(
            [
                "{}",
                "[]",
                "null",
                '{"itemId": "x"}',
                '{"itemId": 1, "source": "m", "itemData": {}}',
                '{"itemId": "\\u0000", "source": "m", "itemData": {}}',
            ]
        ),
    )
)
def test_manual_resolution_with_junk_json_is_a_form_error(change, world, clients):
    conflict = world["conflict"]
    url = reverse("admin:sync_conflict_resolve", args=[quote(conflict.pk)])
    before = all_rows()
    response = clients["superuser"].post(url, {"strategy": "manual", "resolved_change": change})
    # Resolving writes the conflict, its log and its pair's counter; nothing else, ever.
    assert changed_models(before) <= {"sync.Conflict", "sync.ConflictResolution", "sync.SyncState"}
    assert response.status_code in {200, 302}
    if response.status_code == 200:
        # The review page again, saying what is wrong with the change.
        assert response.context["manual_form"].errors["resolved_change"]
    stored = Conflict.objects.get(pk=conflict.pk)
    if stored.is_resolved:
        # Only a valid change object resolves; reopen so the next example starts unresolved again.
        assert response.status_code == 302
        stored.reopen()
    assert ConflictResolution.objects.filter(conflict_id=conflict.pk, action="resolved").count() == (
        ConflictResolution.objects.filter(conflict_id=conflict.pk, action="reopened").count()
    )


def test_manual_resolution_with_too_deeply_nested_json_is_a_form_error(world, clients):
    url = reverse("admin:sync_conflict_resolve", args=[quote(world["conflict"].pk)])
    change = "[" * 5000 + "]" * 5000
    response = clients["superuser"].post(url, {"strategy": "manual", "resolved_change": change})
    assert response.status_code == 200
    assert response.context["manual_form"].errors["resolved_change"] == [
        "The resolved change is nested too deeply."
    ]
    assert not Conflict.objects.get(pk=world["conflict"].pk).is_resolved


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m.__name__)
def test_changelist_with_junk_search_filters_ordering_and_page_never_500s(model, world, clients):
    client = clients["superuser"]
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    model_admin = admin.site._registry[model]
    filter_params = [
        "q",
        "o",
        "p",
        "e",
        "all",
        "status",
        "state",
        "is_resolved__exact",
        "created_at__gte",
        "id__exact",
        "pk",
        "_to_field",
        "_popup",
    ]
    filter_params += [name for name in getattr(model_admin, "list_filter", ()) if isinstance(name, str)]

    before = all_rows()

    @ADMIN_FUZZ
    @given(params=st.dictionaries(st.sampled_from(filter_params), JUNK, min_size=1, max_size=3))
    def get_junk(params: dict[str, str]) -> None:
        response = client.get(url, params)
        assert response.status_code in OK_STATUSES

    get_junk()
    assert changed_models(before) == set(), "a changelist GET wrote rows"


@pytest.mark.parametrize("model", [Organization, Feature], ids=lambda m: m.__name__)
def test_huge_search_term_is_not_a_500(model, world, clients):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = clients["superuser"].get(url, {"q": "x" * 70_000})
    assert response.status_code == 400
    assert b"Search term too long" in response.content
    # The longest accepted term still searches.
    assert clients["superuser"].get(url, {"q": "x" * 1000}).status_code == 200


def test_tampered_permission_id_is_a_form_error(world, clients):
    response = clients["superuser"].post(
        reverse("admin:auth_group_add"), {"name": "tampered", "permissions": [str(2**70)]}
    )
    assert response.status_code == 200
    assert "is not a valid value" in response.content.decode()
    assert not Group.objects.filter(name="tampered").exists()


@pytest.mark.parametrize("value", ["abc", "9" * 40, "-1", "1.5"])
@pytest.mark.parametrize(
    "url_name",
    [
        "admin:accounts_lineartoken_add",
        "admin:planning_programincrement_add",
        "admin:planning_planningsession_add",
    ],
)
def test_tampered_autocomplete_foreign_key_is_a_form_error(url_name, value, world, clients):
    response = clients["superuser"].post(reverse(url_name), {"organization": value})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["organization"]
