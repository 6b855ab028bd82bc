"""Paging past an estimated count (see :class:`sync.paginator.EstimatedCountPaginator`)."""

from __future__ import annotations

from django import template
from django.contrib.admin.views.main import PAGE_VAR, ChangeList

register = template.Library()


@register.simple_tag
def estimated_next_page_url(cl: ChangeList) -> str:
    """The next page's query string when the count is an estimate and this page is full, else ``""``.

    The page links end at the estimate; rows past it are reached one "Next" at a time.
    """
    paginator = getattr(cl, "paginator", None)
    if not getattr(paginator, "count_is_estimate", False) or len(cl.result_list) < cl.list_per_page:
        return ""
    return cl.get_query_string({PAGE_VAR: cl.page_num + 1})
