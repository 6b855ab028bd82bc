"""The operator's lists fit a 1366×768 laptop screen in real Chromium: no horizontal scrollbar.

On the demo world (``seed_demo``) plus rows made to be wide: a long title, a long error, long page and
team names. Each list is checked with ``scrollWidth <= innerWidth`` on the document. With
UPDATE_SCREENSHOTS=1 the conflicts list and the dashboard also go to docs/images/ (the README's
pictures); a routine `make test` leaves the work tree clean.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from console.demo import ORGANIZATIONS, seed_demo
from sync.admin import ERROR_HEAD_LENGTH
from sync.models import Conflict, ConfluencePage, LinearTeam, SyncHistory

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
PASSWORD = "correct-horse-battery-staple"
LAPTOP = (1366, 768)

LISTS = {
    "conflicts": "/admin/sync/conflict/?status=all",
    "sessions": "/admin/planning/planningsession/",
    "sync states": "/admin/sync/syncstate/",
    "sync history": "/admin/sync/synchistory/",
    "Linear tokens": "/admin/accounts/lineartoken/",
    "Confluence tokens": "/admin/accounts/confluencetoken/",
    "issue cache": "/admin/sync/linearissuecache/",
}


def _wide_rows() -> None:
    """Rows that push columns wide: what a real deployment shows sooner or later."""
    org = ORGANIZATIONS[0]
    page_id, _ = org.pages[0]
    team_id = org.team_id(org.teams[0][0])
    LinearTeam.objects.upsert_many(
        org.linear_id, [{"id": team_id, "key": "NW", "name": "Storefront and Checkout Experience (EMEA)"}]
    )
    ConfluencePage.objects.upsert_many(
        org.linear_id,
        [
            {
                "id": page_id,
                "title": "PI 2026.4 Planning – Storefront, Checkout and Payments: objectives, risks, "
                "dependencies",
                "url": org.page_url(page_id, "PI 2026.4 Planning"),
            }
        ],
    )
    SyncHistory.objects.record(
        page_id,
        team_id,
        success=False,
        error=(
            "Linear API error 400 on issueUpdate(input: {stateId: 'b5c1…', estimate: 13, labelIds: [...]}): "
            "Argument Validation Error - estimate must be one of the team's estimation scale values "
            "(0, 1, 2, 3, 5, 8); stack: GraphQLError at validate (/srv/agent/node_modules/graphql/…) "
            + "x"
            * 400
        ),
        organization_id=org.linear_id,
        synced_at=timezone.now() - dt.timedelta(minutes=3),
    )
    conflict = Conflict.objects.filter(confluence_page_id=page_id).order_by("-created_at").first()
    data = {
        **conflict.linear_change["itemData"],
        "title": "As a returning customer I can pay with a saved card, SEPA mandate or Apple Pay without "
        "re-entering my billing address on every single checkout",
    }
    Conflict.objects.store(
        conflict.pk,
        linear_change={**conflict.linear_change, "itemData": data},
        confluence_change=conflict.confluence_change,
        confluence_page_id=page_id,
        linear_team_id=team_id,
    )


def _log_in(browser, live_server) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.CSS_SELECTOR, "#id_username").send_keys("operator")
    browser.find_element(By.CSS_SELECTOR, "#id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    browser.find_element(By.CSS_SELECTOR, "#console-dashboard")


def _widths(browser) -> tuple[int, int]:
    """The page's scroll width, or the result table's when it scrolls inside its own box (Django's
    ``.results`` has ``overflow-x: auto``), and the window's inner width."""
    return tuple(
        browser.execute_script(
            """
            const page = document.documentElement.scrollWidth;
            const results = document.querySelector('#changelist .results');
            const inner = results ? results.scrollWidth - results.clientWidth : 0;
            const table = document.querySelector('#result_list');
            const right = table ? Math.ceil(table.getBoundingClientRect().right) : 0;
            return [Math.max(page + inner, right), window.innerWidth];
            """
        )
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_operator_lists_fit_a_laptop_screen_without_horizontal_scroll(
    browser, live_server, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    seed_demo()
    _wide_rows()
    get_user_model().objects.create_superuser(username="operator", password=PASSWORD)
    browser.set_window_size(*LAPTOP)
    _log_in(browser, live_server)

    too_wide = {}
    for name, path in LISTS.items():
        browser.get(live_server.url + path)
        rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        assert rows, f"{name}: the demo data should list rows"
        scroll_width, inner_width = _widths(browser)
        browser.save_screenshot(str(tmp_path / f"{name.replace(' ', '-')}.png"))
        if scroll_width > inner_width:
            too_wide[name] = (scroll_width, inner_width)
    assert too_wide == {}, f"lists wider than {LAPTOP[0]} px (scrollWidth, innerWidth): {too_wide}"

    # The long error is an excerpt that wraps, the whole error on hover.
    browser.get(live_server.url + LISTS["sync history"])
    excerpt = browser.find_element(By.CSS_SELECTOR, "#result_list .excerpt")
    assert excerpt.text.endswith("…") and len(excerpt.text) <= 120
    # The list loads the head of the error only (an error may be 20,000 characters): on hover, that head.
    assert len(excerpt.get_attribute("title")) == ERROR_HEAD_LENGTH
    assert excerpt.size["height"] > 20  # more than one line

    # The conflicts list speaks in names: organization, page, team, title, Linear identifier and links.
    browser.get(live_server.url + "/admin/sync/conflict/")
    table = browser.find_element(By.CSS_SELECTOR, "#result_list").text
    assert "Northwind Traders (demo)" in table and "Payments (PAY)" in table
    assert "Payment method picker" in table and "PAY-120" in table
    linear = browser.find_element(By.CSS_SELECTOR, '#result_list a[title="Open in Linear"]')
    assert linear.get_attribute("href").startswith("https://linear.app/")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        browser.set_window_size(LAPTOP[0], 900)
        assert browser.save_screenshot(str(IMAGES / "conflicts-list.png"))
        browser.set_window_size(*LAPTOP)

    browser.get(live_server.url + "/admin/")
    dashboard = browser.find_element(By.CSS_SELECTOR, "#console-dashboard").text
    assert "Northwind Traders (demo)" in dashboard and "Failing syncs" in dashboard
    scroll_width, inner_width = _widths(browser)
    assert scroll_width <= inner_width, ("dashboard", scroll_width, inner_width)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        browser.set_window_size(LAPTOP[0], 1000)
        assert browser.save_screenshot(str(IMAGES / "admin-dashboard.png"))
