"""The exception reporter filter: requests that carry secrets get clean error reports, DEBUG on or off.

Django's ``SafeExceptionReporterFilter`` cleans POST data marked ``sensitive_post_parameters`` and the
locals of functions marked ``sensitive_variables``, but only with DEBUG off; with DEBUG on its crash page
shows both in full. And a crash deep inside Django (a model save) has frames whose locals hold what the
view was given (``Model._save_table``'s ``values`` hold a new token before the field encrypts it), which
no decorator of ours can mark. So for a request a view marked ``sensitive_post_parameters`` (the token
admin's add and change views) this filter is active in both modes and hides every frame's variables.
Other requests get Django's behaviour unchanged.
"""

from __future__ import annotations

from types import FrameType
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter


def carries_secrets(request: HttpRequest | None) -> bool:
    """Whether a view marked this request ``sensitive_post_parameters`` (it received a secret)."""
    return request is not None and bool(getattr(request, "sensitive_post_parameters", None))


class SensitiveRequestExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, also active with DEBUG on for requests that carry secrets, hiding all locals."""

    def is_active(self, request: HttpRequest | None) -> bool:
        return carries_secrets(request) or super().is_active(request)

    def get_traceback_frame_variables(self, request: HttpRequest | None, tb_frame: FrameType) -> Any:
        if carries_secrets(request):
            # Which local of which Django frame holds the secret is not ours to know: none is shown.
            return [("(local variables)", self.cleansed_substitute)]
        return super().get_traceback_frame_variables(request, tb_frame)
