"""``{% conflict_names conflict as names %}``: what the directory and the changes know of a conflict.

The review page's header shows the item's title and Linear identifier (linked to Linear), the
organization, and the Confluence page and Linear team by name, with the ids on hover.
"""

from __future__ import annotations

from typing import Any

from django import template

from sync.admin import attach_names
from sync.models import Conflict, LinearIssueCache

register = template.Library()


def _item_data(change: Any) -> dict[str, Any]:
    data = change.get("itemData") if isinstance(change, dict) else None
    return data if isinstance(data, dict) else {}


def _text(*values: Any) -> str:
    return next((value for value in values if isinstance(value, str) and value), "")


@register.simple_tag
def conflict_names(conflict: Conflict) -> dict[str, Any]:
    """Organization, page, team (directory entries or ``None``), title, identifier and URL of the item.

    At most four queries: the conflict's organization, team, page, and the issue cache when the changes
    carry no title or identifier.
    """
    attach_names(
        [conflict],
        organization=lambda row: row.organization,
        team_id=lambda row: row.linear_team_id,
    )
    linear, confluence = _item_data(conflict.linear_change), _item_data(conflict.confluence_change)
    title = _text(linear.get("title"), confluence.get("title"))
    identifier = _text(linear.get("identifier"), confluence.get("identifier"))
    url = _text(linear.get("url"), confluence.get("url"))
    organization = conflict.names.organization
    if organization is not None and conflict.item_id and not (title and identifier and url):
        cached = (
            LinearIssueCache.objects.filter(organization=organization, linear_issue_id=conflict.item_id)
            .values_list("issue_data", flat=True)
            .first()
        )
        if isinstance(cached, dict):
            title = title or _text(cached.get("title"))
            identifier = identifier or _text(cached.get("identifier"))
            url = url or _text(cached.get("url"))
    return {
        "organization": organization,
        "page": conflict.names.page,
        "team": conflict.names.team,
        "title": title,
        "identifier": identifier,
        "url": url if url.startswith(("https://", "http://")) else "",
    }
