"""``{% console_dashboard %}``: the operator dashboard on the admin index."""

from typing import Any

from django import template

from console.dashboard import build_dashboard

register = template.Library()


@register.inclusion_tag("console/dashboard.html", takes_context=True)
def console_dashboard(context: dict[str, Any]) -> dict[str, Any]:
    """Render the panels the requesting user may see, for one organization with ``?organization=<pk>``."""
    request = context["request"]
    value = request.GET.get("organization", "")
    organization = int(value) if value.isdigit() and len(value) < 19 else None
    return {"dashboard": build_dashboard(request.user, organization=organization)}


@register.filter
def short_id(value: str) -> str:
    """A long id (a UUID) shortened to its first eight characters; the full id goes in a title."""
    return value if len(value) <= 12 else f"{value[:8]}…"
