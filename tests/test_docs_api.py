"""docs/api.md is true: its ``python`` blocks run, in order, and it documents every public method."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from accounts.models import ConfluenceToken, LinearToken, Organization
from planning.models import PlanningSession, ProgramIncrement
from sync.models import (
    Conflict,
    ConflictResolution,
    FieldOwnership,
    ItemSnapshot,
    LinearIssueCache,
    SyncHistory,
    SyncState,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "api.md"
PROJECT_APPS = ("accounts.", "planning.", "sync.")


def python_blocks() -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block of docs/api.md."""
    text = DOC.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start(1)) + 1, match.group(1))
        for match in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S)
    ]


def is_async_example(code: str) -> bool:
    """The async form of an example: it runs ``main()`` with ``asyncio.run`` (docs/api.md, "Async code")."""
    return re.search(r"^asyncio\.run\(main\(\)\)$", code, re.M) is not None


def test_doc_has_examples_for_each_section():
    assert len(python_blocks()) >= 20


def sections() -> dict[str, str]:
    """Text of each ``## `` section of docs/api.md, by heading."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


# Sections whose every example has an async form; the other sections' owners add theirs here.
ASYNC_SECTIONS = [
    "Set up Django in a plain Python process",
    "Conventions",
    "Organizations",
    "OAuth tokens",
    "Sync history",
    "Errors",
    "Transactions and locking",
]


@pytest.mark.parametrize("heading", ASYNC_SECTIONS)
def test_section_examples_have_an_async_form(heading):
    blocks = re.findall(r"^```python\n(.*?)^```$", sections()[heading], re.M | re.S)
    assert any(is_async_example(code) for code in blocks), f"{heading}: no async example"


@pytest.mark.django_db(transaction=True)
def test_examples_run_in_order():
    namespace: dict = {"__name__": "docs_api_examples"}
    saved_path = list(sys.path)
    try:
        for first_line, code in python_blocks():
            # Padding keeps the file's line numbers, so a failing example's traceback points into
            # docs/api.md at the right line.
            compiled = compile("\n" * (first_line - 1) + code, str(DOC), "exec")
            try:
                exec(compiled, namespace)  # noqa: S102 - our own documentation's examples
            finally:
                if is_async_example(code):
                    # asyncio.run() ran the twins on asgiref's shared thread, with a connection of its
                    # own: close it, or the test database cannot be dropped (PostgreSQL).
                    asyncio.run(sync_to_async(connections.close_all)())
    finally:
        sys.path[:] = saved_path
    # The examples ran to the end: the last block's result is there.
    assert namespace["locked"].status == "running"


def _public_methods(cls: type) -> set[str]:
    """Public callables that project code (not Django) defines on ``cls`` or its bases."""
    names = set()
    for klass in inspect.getmro(cls):
        if not klass.__module__.startswith(PROJECT_APPS):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or not callable(value) or isinstance(value, type):
                continue
            names.add(name)
    return names


# Methods every Django model or manager has, overridden for a project reason but not API to document
# one by one (the append-only log's refusals are documented as AppendOnlyError).
_NOT_API = {"save", "delete", "update", "clean", "get_queryset"}


@pytest.mark.parametrize(
    "model",
    [
        Organization,
        LinearToken,
        ConfluenceToken,
        ProgramIncrement,
        PlanningSession,
        SyncState,
        Conflict,
        ConflictResolution,
        SyncHistory,
        LinearIssueCache,
        ItemSnapshot,
        FieldOwnership,
    ],
    ids=lambda model: model.__name__,
)
def test_every_public_method_is_documented(model):
    doc = DOC.read_text(encoding="utf-8")
    names = (_public_methods(type(model._default_manager)) | _public_methods(model)) - _NOT_API
    undocumented = sorted(name for name in names if not re.search(rf"\b{name}\(", doc))
    assert not undocumented, f"{model.__name__}: not in docs/api.md: {undocumented}"


@pytest.mark.parametrize("module_name", ["accounts.services", "planning.services", "sync.services"])
def test_every_public_service_function_is_documented(module_name):
    module = importlib.import_module(module_name)
    doc = DOC.read_text(encoding="utf-8")
    functions = [
        name
        for name, value in vars(module).items()
        if inspect.isfunction(value) and value.__module__ == module_name and not name.startswith("_")
    ]
    assert functions, module_name
    undocumented = [name for name in functions if not re.search(rf"\b{name}\(", doc)]
    assert not undocumented, f"{module_name}: not in docs/api.md: {undocumented}"


# --- async twins ---------------------------------------------------------------------------------------


def _sync_public_methods(cls: type) -> set[str]:
    return {
        name
        for name in _public_methods(cls)
        if not inspect.iscoroutinefunction(getattr(cls, name))
        and not isinstance(getattr(cls, name), property)
    }


# Public methods that need no twin, and why: they return a lazy QuerySet (evaluate it with ``async for``,
# ``acount()``...), or they are pure Python on a loaded row (no database access).
NO_TWIN = {
    # QuerySets
    "expired",
    "expiring_within",
    "with_status",
    "needing_reauthorization",
    "for_pair",
    # pure Python on a loaded row
    "is_expired",
    "expires_soon",
    "status",
    "token_hint",
    "organization_id_display",
    "needs_reauthorization",
}


@pytest.mark.parametrize(
    "model", [Organization, LinearToken, ConfluenceToken, SyncHistory], ids=lambda m: m.__name__
)
def test_every_public_method_has_an_async_twin(model):
    manager, instance = type(model._default_manager), model
    missing = []
    for cls in (manager, instance):
        for name in sorted(_sync_public_methods(cls) - _NOT_API - NO_TWIN):
            twin = getattr(cls, f"a{name}", None)
            if twin is None or not inspect.iscoroutinefunction(twin):
                missing.append(f"{cls.__name__}.{name}")
                continue
            sync_parameters = list(inspect.signature(getattr(cls, name)).parameters)
            assert list(inspect.signature(twin).parameters) == sync_parameters, f"a{name}: other parameters"
    assert not missing, f"no async twin: {missing}"
