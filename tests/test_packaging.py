"""The project installs as a distribution: the wheel holds the six packages with their data, nothing else.

The wheel is built offline from a copy of the checkout (``pip wheel --no-deps --no-build-isolation``
with the setuptools of requirements-dev.txt), then installed with ``--target`` into a folder of its own
and started from there with ``django.setup()``, away from the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["accounts", "config", "console", "legacy", "planning", "sync"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source") / "linear-planning-store"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "__pycache__",
            ".pytest_cache",
            ".ruff_cache",
            ".mypy_cache",
            "db.sqlite3*",
            "build",
        ),
    )
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            out,
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("linear_planning_store-*.whl")
    return built


def test_wheel_holds_the_six_packages_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert sorted(top_level) == PACKAGES
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "docs/"))]


def test_wheel_holds_every_module_migration_template_and_static_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                expected.add(path.relative_to(ROOT).as_posix())
    assert expected - names == set()
    # A few by name, so that an empty rglob cannot pass this test.
    assert {
        "accounts/migrations/0001_initial.py",
        "accounts/management/commands/rotate_token_keys.py",
        "config/templates/admin/index.html",
        "console/templates/console/dashboard.html",
        "console/static/console/dashboard.css",
        "sync/templates/admin/sync/conflict/review.html",
        "accounts/py.typed",
        "sync/py.typed",
    } <= names


def test_wheel_requires_the_runtime_dependencies_of_requirements_txt(wheel: Path) -> None:
    metadata = zipfile.ZipFile(wheel).read("linear_planning_store-0.1.0.dist-info/METADATA").decode()
    requires = Parser().parsestr(metadata).get_all("Requires-Dist")
    pinned = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert len(requires) == len(pinned) == 7
    assert [name.split("<")[0].split(">")[0].split("=")[0].lower() for name in requires] == [
        line.split("<")[0].split(">")[0].split("=")[0].lower() for line in pinned
    ]
    assert "Django<5.3,>=5.2.8" in requires


def test_installed_copy_starts_django_and_finds_its_templates(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", target, wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = (
        "import django, accounts, config.settings\n"
        "django.setup()\n"
        "from django.core.management import call_command\n"
        "from django.template.loader import get_template\n"
        "call_command('migrate', verbosity=0)\n"
        "from accounts.models import Organization\n"
        "Organization.objects.ensure('org-installed')\n"
        "print(accounts.__file__)\n"
        "print(get_template('admin/index.html').origin.name)\n"
        "print(get_template('console/dashboard.html').origin.name)\n"
        "print(Organization.objects.count())\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "DATABASE_URL")}
    env.update(
        PYTHONPATH=str(target),
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'installed.sqlite3'}",
        ENV_FILE=str(tmp_path / "no.env"),
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    module, index, dashboard, count = result.stdout.split()
    for path in (module, index, dashboard):
        assert Path(path).is_relative_to(target), path
    assert count == "1"
