"""Run another engineer's benchmark module (``run(*, quick) -> list[dict]``) in this process.

``python -m benchmarks.external benchmarks.admin_scale --json-out FILE [--quick]``: the runner calls
this in a subprocess so that each module gets its own Django set-up and its own scratch database.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from benchmarks.common import RESULT_KEYS


def main() -> int:
    """Import the named module, call its ``run``, check the rows and write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("module")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    module = importlib.import_module(args.module)
    results = module.run(quick=args.quick)
    for row in results:
        missing = [key for key in RESULT_KEYS if key not in row]
        if missing:
            sys.stderr.write(f"{args.module}: a result row lacks {', '.join(missing)}: {row!r}\n")
            return 2
    args.json_out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
