"""Project-wide request guards."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render

#: Longest admin search term accepted. Ids, titles and URLs fit many times over; SQLite refuses
#: LIKE patterns beyond 50,000 bytes, so an unbounded term would otherwise be a 500.
MAX_SEARCH_TERM_LENGTH = 1000


class SearchTermLengthMiddleware:
    """Answer 400 to a search (``?q=``) longer than :data:`MAX_SEARCH_TERM_LENGTH` characters.

    Every changelist of the admin, Django's own included, searches with ``q``; one guard here covers
    them all instead of a ``get_search_results`` override in each ModelAdmin.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if len(request.GET.get("q", "")) > MAX_SEARCH_TERM_LENGTH:
            return bad_request(request, f"Search term too long: at most {MAX_SEARCH_TERM_LENGTH} characters.")
        return self.get_response(request)


def bad_request(request: HttpRequest, message: str) -> HttpResponse:
    """A 400 in the admin's look (``templates/400.html``) saying what was wrong."""
    return render(request, "400.html", {"exception": message}, status=400)


#: Admin action fields of a changelist POST (``django.contrib.admin.helpers.ACTION_CHECKBOX_NAME`` ...).
ACTION_FIELDS = ("_selected_action", "action", "select_across", "index")


class NulCharacterMiddleware:
    """A NUL character in the path is a 404, in a query or action value a 400; never a database error.

    PostgreSQL refuses NUL in text (``DataError``: a 500 wherever a value reaches a query): an admin
    object id, a changelist filter value, an action's selected ids. Form fields are left to the forms,
    which report it as a form error. No stored value can contain a NUL, so a path holding one names
    nothing (404) and a parameter holding one is malformed (400), before any view runs.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return render(request, "404.html", {"request_path": request.path}, status=404)
        for where, values in (("query", request.GET), ("form", _form_values(request))):
            for key, items in values.lists():
                if "\x00" in key or any("\x00" in item for item in items if isinstance(item, str)):
                    return bad_request(
                        request, f"A {where} value contains a NUL character, which is not allowed."
                    )
        return self.get_response(request)


def _form_values(request: HttpRequest) -> QueryDict:
    """The posted admin action fields (the selected ids reach a query as they are).

    Other form fields go through form validation, which reports a NUL as a form error.
    """
    result = QueryDict(mutable=True)
    if request.method == "POST":
        for key in ACTION_FIELDS:
            result.setlist(key, request.POST.getlist(key))
    return result
