"""Production settings (DEBUG off): HSTS, secure and HTTP-only cookies, X-Frame-Options DENY, HTTPS
redirect; CSRF enforced on every admin write.

``check --deploy`` itself is tests/test_settings.py::test_check_deploy_is_clean_with_production_variables.
The headers are read in a subprocess started with the production environment, because settings are
evaluated once per process: overriding them in this process would test the override, not settings.py.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.utils import quote
from django.test import Client
from django.urls import reverse

from accounts.models import LinearToken
from sync.models import Conflict, ConflictResolution
from tests.test_settings import PRODUCTION_ENV, run_manage

HOST = "planning.example.com"
PROBE = f"""
import json
from django.core.management import call_command
from django.contrib.auth import get_user_model
from django.test import Client

call_command("migrate", verbosity=0)
get_user_model().objects.create_superuser("ops", "ops@example.com", "a-Long-passw0rd-for-the-probe")
result = {{}}
plain = Client().get("/admin/", HTTP_HOST="{HOST}")
result["http"] = [plain.status_code, plain.get("Location")]
login = Client().post("/admin/login/?next=/admin/",
                      {{"username": "ops", "password": "a-Long-passw0rd-for-the-probe"}},
                      secure=True, HTTP_HOST="{HOST}")
result["login_status"] = login.status_code
result["headers"] = dict(login.headers)
result["cookies"] = {{name: {{"secure": bool(m["secure"]), "httponly": bool(m["httponly"]),
                             "samesite": m["samesite"]}} for name, m in login.cookies.items()}}
forged = Client(enforce_csrf_checks=True).post("/admin/login/", {{"username": "ops", "password": "x"}},
                                               secure=True, HTTP_HOST="{HOST}")
result["csrf_status"] = forged.status_code
print("PROBE" + json.dumps(result))
"""


@pytest.fixture(scope="module")
def production_response() -> dict:
    proc = run_manage("shell", "--no-imports", "-c", PROBE, env_overrides=PRODUCTION_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("PROBE"))
    return json.loads(line[len("PROBE") :])


def test_plain_http_is_redirected_to_https(production_response):
    status, location = production_response["http"]
    assert (status, location) == (301, f"https://{HOST}/admin/")


def test_security_headers_on_a_production_response(production_response):
    headers = {name.lower(): value for name, value in production_response["headers"].items()}
    assert production_response["login_status"] == 302
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"


def test_session_and_csrf_cookies_are_secure(production_response):
    cookies = production_response["cookies"]
    assert cookies["sessionid"] == {"secure": True, "httponly": True, "samesite": "Lax"}
    assert cookies["csrftoken"]["secure"] is True
    assert cookies["csrftoken"]["samesite"] == "Lax"


def test_production_login_without_a_csrf_token_is_refused(production_response):
    assert production_response["csrf_status"] == 403


# --- CSRF on admin writes (this process's settings: the middleware is the same) -----------------------


@pytest.fixture
def csrf_client(users) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["superuser"])
    return client


@pytest.mark.django_db
def test_admin_writes_without_a_csrf_token_are_refused_and_change_nothing(world, csrf_client):
    conflict, token = world["conflict"], world["linear"]
    before_token = LinearToken.objects.get(pk=token.pk).access_token
    posts = {
        "resolve": (
            reverse("admin:sync_conflict_resolve", args=[quote(conflict.pk)]),
            {"strategy": "linear"},
        ),
        "bulk action": (
            reverse("admin:sync_conflict_changelist"),
            {"action": "resolve_keeping_linear", "_selected_action": [conflict.pk], "post": "yes"},
        ),
        "replace token": (
            reverse("admin:accounts_lineartoken_change", args=[token.pk]),
            {
                "organization": token.organization_id,
                "app_user_id": "x",
                "expires_at_0": "2031-01-02",
                "expires_at_1": "03:04:05",
                "new_access_token": "lin_oauth_forged_0000000000000000",
            },
        ),
        "delete organization": (
            reverse("admin:accounts_organization_delete", args=[token.organization_id]),
            {"post": "yes"},
        ),
        "logout": (reverse("admin:logout"), {}),
    }
    statuses = {name: csrf_client.post(url, data).status_code for name, (url, data) in posts.items()}

    assert statuses == dict.fromkeys(posts, 403)
    assert not Conflict.objects.get(pk=conflict.pk).is_resolved
    assert ConflictResolution.objects.filter(conflict_id=conflict.pk).count() == 0
    assert LinearToken.objects.get(pk=token.pk).access_token == before_token


@pytest.mark.django_db
def test_the_same_post_with_the_csrf_token_goes_through(world, csrf_client):
    """The control for the test above: the 403s come from CSRF, not from anything else."""
    conflict = world["conflict"]
    page = csrf_client.get(reverse("admin:sync_conflict_change", args=[quote(conflict.pk)]))
    assert page.status_code == 200
    token = page.context["csrf_token"]
    response = csrf_client.post(
        reverse("admin:sync_conflict_resolve", args=[quote(conflict.pk)]),
        {"strategy": "linear", "csrfmiddlewaretoken": str(token)},
    )
    assert response.status_code == 302
    assert Conflict.objects.get(pk=conflict.pk).is_resolved
