"""End to end in a real browser: log in, review a conflict, keep Linear, find it resolved.

Saves screenshots next to the test's temporary files. With UPDATE_SCREENSHOTS=1 the review page also
goes to docs/images/conflict-console.png, the README's picture (not on every run: a routine
`make test` must leave the work tree clean).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from sync.models import Conflict, ConflictResolution, FieldOwnership, ItemSnapshot
from sync.services import reconcile
from tests.factories import make_change, make_conflict

README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "conflict-console.png"
PASSWORD = "correct-horse-battery-staple"

#: What both sides last agreed on (the ItemSnapshot): the review page's "Last synced" column.
BASE_ITEM = {
    "title": "Checkout: saved payment methods",
    "description": "As a returning customer I can pay with a saved card.\n\nAcceptance: a card list.",
    "state": {"name": "Planned", "type": "unstarted"},
    "estimate": 5,
    "priority": 2,
    "labels": ["payments"],
    "assignee": {"id": "usr_7f3a", "name": "Dana Reyes"},
    "dueDate": "2026-03-06",
    "url": "https://linear.app/acme/issue/PAY-412",
}
LINEAR_ITEM = {
    **BASE_ITEM,
    "title": "Checkout: support saved payment methods",
    "state": {"name": "In Progress", "type": "started"},
    "labels": ["payments", "checkout"],
    "dueDate": "2026-03-13",
}
CONFLUENCE_ITEM = {
    **BASE_ITEM,
    "title": "Checkout: saved payment methods (cards and SEPA)",
    "estimate": 8,
    "labels": ["payments", "sepa"],
    "state": {"name": "Ready", "type": "unstarted"},
    "dueDate": "2026-03-20",
}
CONFLUENCE_ITEM.pop("url")


def _by_css(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, selector)


def _all_css(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def _wait_for(browser, selector: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector))
    )


def _log_in(browser, live_server, username: str) -> None:
    browser.get(f"{live_server.url}/admin/login/?next=/admin/sync/conflict/")
    _by_css(browser, "#id_username").send_keys(username)
    _by_css(browser, "#id_password").send_keys(PASSWORD)
    _by_css(browser, "#login-form [type=submit]").click()
    _wait_for(browser, "#result_list")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_review_keep_linear_and_find_it_resolved(browser, live_server, tmp_path: Path) -> None:
    user = get_user_model().objects.create_superuser(
        username="dana", email="dana@example.com", password=PASSWORD
    )
    pair = {"confluence_page_id": "page-checkout-q1", "linear_team_id": "team-payments"}
    ItemSnapshot.objects.record_synced(
        "org-acme", [{"itemId": "PAY-412", "itemType": "story", "itemData": BASE_ITEM}], **pair
    )
    FieldOwnership.objects.set_owner("org-acme", "state", "linear")
    conflict = reconcile(
        "org-acme",
        make_change("linear", itemId="PAY-412", itemData=LINEAR_ITEM, timestamp=1_767_258_000_000),
        make_change("confluence", itemId="PAY-412", itemData=CONFLUENCE_ITEM, timestamp=1_767_261_600_000),
        **pair,
    ).conflict
    for number in range(420, 424):
        make_conflict(
            id=f"conflict-PAY-{number}",
            item_id=f"PAY-{number}",
            confluence_page_id="page-checkout-q1",
            linear_team_id="team-payments",
        )

    # Log in; the admin sends us on to the conflict list.
    _log_in(browser, live_server, "dana")
    rows = _all_css(browser, "#result_list tbody tr")
    assert len(rows) == 5
    assert "Unresolved" in _by_css(browser, "#changelist-filter").text
    browser.save_screenshot(str(tmp_path / "changelist.png"))

    # Open the conflict: the differing fields are marked, the same ones are not.
    browser.find_element("link text", "conflict-PAY-412").click()
    _wait_for(browser, "#conflict-diff")
    title_row = _by_css(browser, 'tr[data-field="title"]')
    assert "cc-row--differs" in title_row.get_attribute("class")
    assert title_row.find_element("css selector", ".cc-mark").text == "≠"
    assert "Checkout: saved payment methods (cards and SEPA)" in title_row.text
    priority_row = _by_css(browser, 'tr[data-field="priority"]')
    assert "cc-row--same" in priority_row.get_attribute("class")
    assert priority_row.find_element("css selector", ".cc-mark").text == "="
    differing = [row.get_attribute("data-field") for row in _all_css(browser, 'tr[data-differs="true"]')]
    assert differing == ["dueDate", "title"]
    merged = [row.get_attribute("data-field") for row in _all_css(browser, "tr.cc-row--merged")]
    assert merged == ["estimate", "labels", "state.name", "state.type", "url"]
    assert "absent" in _by_css(browser, 'tr[data-field="url"]').text
    # Three columns: last synced, Linear, Confluence.
    headers = [element.text for element in _all_css(browser, "#conflict-diff thead .cc-side-name")]
    assert headers == ["Last synced", "Linear", "Confluence"]
    assert "only Confluence changed it" in _by_css(browser, "#merged-fields").text
    assert "state.name decided by the rule on state (owner:linear)" in _by_css(browser, "#owner-rules").text
    # Keyboard: focus the title's Linear radio, press "c": Confluence is picked.
    from selenium.webdriver.common.keys import Keys

    title_radio = _by_css(browser, 'tr[data-field="title"] input[value="linear"]')
    title_radio.send_keys(Keys.SPACE)
    title_radio.send_keys("c")
    assert _by_css(browser, 'tr[data-field="title"] input[value="confluence"]').is_selected()
    assert [element.text for element in _all_css(browser, ".cc-side-meta .cc-type")] == ["updated", "updated"]
    assert [element.text for element in _all_css(browser, ".cc-timestamp")] == [
        "2026-01-01 09:00:00 UTC",
        "2026-01-01 10:00:00 UTC",
    ]
    # The README's picture: the review page with the navigation sidebar folded away.
    _by_css(browser, "#toggle-nav-sidebar").click()
    screenshot = README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "review.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000

    # Keep Linear: back on the list, the conflict has left the default (unresolved) view...
    _by_css(browser, "#keep-linear").click()
    _wait_for(browser, "#result_list")
    assert "conflict-PAY-412 resolved: Keep Linear." in _by_css(browser, ".messagelist").text
    listed = [link.text for link in _all_css(browser, "#result_list tbody th a")]
    assert "conflict-PAY-412" not in listed
    assert len(listed) == 4

    # ... and is one click away under "Resolved", with who resolved it and how.
    browser.find_element("link text", "Resolved").click()
    _wait_for(browser, "#result_list")
    rows = _all_css(browser, "#result_list tbody tr")
    assert len(rows) == 1
    assert "conflict-PAY-412" in rows[0].text
    assert "Keep Linear · dana" in rows[0].text
    browser.save_screenshot(str(tmp_path / "changelist-resolved.png"))

    conflict.refresh_from_db()
    assert (conflict.is_resolved, conflict.resolution_strategy, conflict.resolved_by_id) == (
        True,
        "linear",
        user.pk,
    )
    assert conflict.resolved_change["itemData"] == LINEAR_ITEM
    assert list(ConflictResolution.objects.for_conflict(conflict.pk).values_list("action", "by")) == [
        ("resolved", user.pk)
    ]
    assert Conflict.objects.filter(is_resolved=False).count() == 4


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_bulk_resolve_with_confirmation_and_manual_json_errors(browser, live_server, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    get_user_model().objects.create_superuser(username="dana", email="dana@example.com", password=PASSWORD)
    for number in (1, 2, 3):
        make_conflict(id=f"conflict-ENG-{number}", item_id=f"ENG-{number}")
    _log_in(browser, live_server, "dana")

    # Bulk: tick two conflicts, pick the action, confirm on the intermediate page.
    for conflict_id in ("conflict-ENG-1", "conflict-ENG-2"):
        _by_css(browser, f'input.action-select[value="{conflict_id}"]').click()
    Select(_by_css(browser, 'select[name="action"]')).select_by_value("resolve_keeping_confluence")
    _by_css(browser, 'button[name="index"]').click()
    _wait_for(browser, "#will-resolve")
    listed = [item.get_attribute("data-conflict-id") for item in _all_css(browser, "#will-resolve > li")]
    assert listed == ["conflict-ENG-2", "conflict-ENG-1"]
    browser.save_screenshot(str(tmp_path / "bulk-confirmation.png"))
    _by_css(browser, "#confirm-resolve").click()
    _wait_for(browser, "#result_list")
    assert "Resolved 2 conflicts (Keep Confluence)." in _by_css(browser, ".messagelist").text
    assert [link.text for link in _all_css(browser, "#result_list tbody th a")] == ["conflict-ENG-3"]

    # Manual: a JSON array is refused with the error on the page, and nothing is written.
    browser.find_element("link text", "conflict-ENG-3").click()
    _wait_for(browser, "#manual-resolution")
    _by_css(browser, "#manual-resolution > summary").click()
    editor = _by_css(browser, "#id_resolved_change")
    editor.clear()
    editor.send_keys("[1, 2]")
    _by_css(browser, "#resolve-manually").click()
    _wait_for(browser, "#manual-errors")
    assert "must be a JSON object" in _by_css(browser, "#manual-errors").text
    assert not Conflict.objects.get(pk="conflict-ENG-3").is_resolved
    browser.save_screenshot(str(tmp_path / "manual-error.png"))

    # A valid edit resolves it as manual.
    conflict = Conflict.objects.get(pk="conflict-ENG-3")
    merged = {**conflict.linear_change, "itemData": {"title": "Merged title", "estimate": 3}}
    browser.execute_script(
        "arguments[0].value = arguments[1];", _by_css(browser, "#id_resolved_change"), json.dumps(merged)
    )
    _by_css(browser, "#resolve-manually").click()
    _wait_for(browser, ".messagelist")  # back on the (now empty) list of unresolved conflicts
    assert "conflict-ENG-3 resolved: Manual (operator-written)." in _by_css(browser, ".messagelist").text
    conflict.refresh_from_db()
    assert (conflict.resolution_strategy, conflict.resolved_change["itemData"]["title"]) == (
        "manual",
        "Merged title",
    )

    # The resolved conflict is read-only, says who and how, and offers Reopen.
    browser.get(f"{live_server.url}/admin/sync/conflict/conflict-ENG-3/change/")
    _wait_for(browser, "#resolution-summary")
    assert "Resolved — Manual (operator-written) by dana" in _by_css(browser, "#resolution-summary").text
    assert _all_css(browser, "#keep-linear") == []
    browser.save_screenshot(str(tmp_path / "resolved.png"))
    _by_css(browser, "#reopen-button").click()
    _wait_for(browser, "#keep-linear")
    assert "reopened" in _by_css(browser, ".messagelist").text
    assert [row.get_attribute("data-action") for row in _all_css(browser, "#resolution-log tbody tr")] == [
        "resolved",
        "reopened",
    ]
