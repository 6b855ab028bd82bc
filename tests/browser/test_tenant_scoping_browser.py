"""In a real Chromium: a reviewer limited to one organization, and "select all" resolved in batches.

The reviewer of Alpha sees Alpha's conflicts and dashboard only, gets the styled 404 for Bravo's conflict,
and resolves every Alpha conflict through "select all": the progress page posts its steps by itself
(JavaScript) until the final report.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType

from accounts.models import Organization, OrganizationMembership
from sync.admin import ConflictAdmin
from sync.models import Conflict
from tests.browser.test_conflict_console import PASSWORD, _all_css, _by_css, _wait_for
from tests.factories import make_conflict
from tests.security.test_tenant_scoping import build_tenant


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_limited_reviewer_sees_one_tenant_and_resolves_all_of_it_in_batches(
    browser, live_server, monkeypatch
):
    monkeypatch.setattr(ConflictAdmin, "bulk_inline_limit", 2)
    monkeypatch.setattr(ConflictAdmin, "bulk_batch_size", 2)
    monkeypatch.setattr(ConflictAdmin, "bulk_step_batches", 1)
    monkeypatch.setattr(ConflictAdmin, "list_per_page", 4)  # two pages: "select all" is offered
    root = get_user_model().objects.create_superuser("root", email="root@example.com", password=PASSWORD)
    alpha = build_tenant("alpha", root)
    bravo = build_tenant("bravo", root)
    for n in range(5):
        make_conflict(
            item_id=f"item-alpha-{n}",
            confluence_page_id="page-alpha",
            linear_team_id="team-alpha",
            organization_id="org-alpha",
        )
    reviewer = get_user_model().objects.create_user("rita", password=PASSWORD, is_staff=True)
    # get_or_create: transactional tests run after the rest of the suite, and by then the permission rows
    # of sync are not always there (the content type rows are recreated with new ids by some flushes).
    ContentType.objects.clear_cache()
    conflict_type, _ = ContentType.objects.get_or_create(app_label="sync", model="conflict")
    for codename in ("view_conflict", "resolve_conflict"):
        permission, _ = Permission.objects.get_or_create(
            content_type=conflict_type, codename=codename, defaults={"name": codename.replace("_", " ")}
        )
        reviewer.user_permissions.add(permission)
    OrganizationMembership.objects.create(user=reviewer, organization=alpha[Organization])
    assert get_user_model().objects.get(pk=reviewer.pk).has_perm("sync.resolve_conflict")

    browser.get(f"{live_server.url}/admin/login/?next=/admin/sync/conflict/")
    _by_css(browser, "#id_username").send_keys("rita")
    _by_css(browser, "#id_password").send_keys(PASSWORD)
    _by_css(browser, "#login-form [type=submit]").click()
    _wait_for(browser, "#result_list")
    # Each row's item link carries its conflict id on hover (the list speaks in titles).
    listed = {row.get_attribute("title") for row in _all_css(browser, "#result_list tbody a.item-title")}
    assert len(listed) == 4
    assert listed <= {f"conflict-item-alpha-{n}" for n in range(5)} | {"conflict-item-alpha-open"}
    assert "bravo" not in browser.page_source.lower()

    browser.get(f"{live_server.url}/admin/sync/conflict/{bravo[Conflict].pk}/change/")
    assert "Page not found" in _by_css(browser, "h1").text
    browser.get(f"{live_server.url}/admin/")
    _wait_for(browser, "#content")
    assert "bravo" not in browser.page_source.lower()

    # "Select all" (every Alpha conflict of the list), resolve keeping Linear, confirm.
    browser.get(f"{live_server.url}/admin/sync/conflict/")
    _by_css(browser, "#action-toggle").click()
    _by_css(browser, ".actions .question a").click()  # "Select all N conflicts"
    _by_css(browser, "select[name=action] option[value=resolve_keeping_linear]").click()
    _by_css(browser, ".actions button[type=submit]").click()
    _wait_for(browser, "#confirm-resolve").click()
    # Several self-posted steps: give a loaded machine time (the default wait is 10 s).
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    report = WebDriverWait(browser, 90).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#bulk-report"))
    )
    assert report.text == "Done"
    assert _by_css(browser, "#bulk-resolved").text == "Resolved 6 conflicts (Keep Linear), in 4 batches."
    assert Conflict.objects.filter(confluence_page_id="page-alpha", is_resolved=False).count() == 0
    assert Conflict.objects.get(pk=bravo[Conflict].pk).is_resolved is False
