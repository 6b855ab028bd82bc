"""Small ``make_<model>(**overrides)`` functions that build valid rows for tests.

One section per app; each function returns a saved instance and accepts overrides for any field.
"""

from __future__ import annotations

import itertools
from typing import Any

from accounts.models import Organization

_sequence = itertools.count(1)


def unique(prefix: str) -> str:
    """A string no other call in this process returns: ``<prefix>-<n>``."""
    return f"{prefix}-{next(_sequence)}"


# --- accounts --------------------------------------------------------------------------------


def make_organization(**overrides: Any) -> Organization:
    fields = {"linear_id": unique("org"), "name": "Acme"}
    fields.update(overrides)
    return Organization.objects.create(**fields)


# --- end accounts ----------------------------------------------------------------------------

# --- planning --------------------------------------------------------------------------------

# --- end planning ----------------------------------------------------------------------------

# --- sync ------------------------------------------------------------------------------------

# --- end sync --------------------------------------------------------------------------------
