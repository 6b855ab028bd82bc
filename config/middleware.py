"""Project-wide request guards."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

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
            return HttpResponseBadRequest(
                f"Search term too long: at most {MAX_SEARCH_TERM_LENGTH} characters.",
                content_type="text/plain; charset=utf-8",
            )
        return self.get_response(request)
