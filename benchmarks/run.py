"""``make bench``: run every benchmark on scratch databases, print the ratios, rewrite docs/benchmarks.md.

    DEBUG=true python -m benchmarks.run --pg-url postgres://postgres@127.0.0.1:5432/postgres [--quick]

The runner creates a scratch PostgreSQL database (``CREATE DATABASE``, dropped at the end) and a
temporary SQLite file, migrates each once, and gives every benchmark process a fresh copy (PostgreSQL
``TEMPLATE``, a file copy for SQLite). Each benchmark module runs in its own process, configured by
environment variables exactly as the project is (``DATABASE_URL``, ``DB_POOL``, ``CONN_MAX_AGE``), and
writes its result rows as JSON. Every ratio compares two figures measured in the same run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from benchmarks.common import error_result, machine_info

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
HAND_BEGIN = "<!-- hand-written: begin (benchmarks/run.py keeps this section) -->"
HAND_END = "<!-- hand-written: end -->"
#: Environment variables that would change how a benchmark process connects; each job sets its own.
CONNECTION_VARIABLES = (
    "DATABASE_URL",
    "DB_POOL",
    "DB_POOL_MIN_SIZE",
    "DB_POOL_MAX_SIZE",
    "DB_POOL_TIMEOUT",
    "CONN_MAX_AGE",
    "TEST_DATABASE_NAME",
)
#: Connection set-ups compared by benchmarks.connections (label, environment). The first is the baseline.
CONNECTION_SETUPS: list[tuple[str, dict[str, str]]] = [
    ("new connection per operation (CONN_MAX_AGE=0)", {"CONN_MAX_AGE": "0"}),
    ("CONN_MAX_AGE=60", {"CONN_MAX_AGE": "60"}),
    ("DB_POOL=true (min 2, max 10)", {"DB_POOL": "true"}),
    ("DB_POOL=true, DB_POOL_MAX_SIZE=16", {"DB_POOL": "true", "DB_POOL_MAX_SIZE": "16"}),
]
GROUPS = ("hot_paths", "bulk", "three_way", "connections", "admin_scale", "import_throughput")
#: Environment of a job measured with production settings: DEBUG off needs a real SECRET_KEY (a fresh
#: random one; FERNET_KEYS comes from the base environment). Everything else keeps its default.
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(48),
    "ALLOWED_HOSTS": "127.0.0.1",
}
#: Section titles of docs/benchmarks.md, by group.
GROUP_TITLES = {
    "hot_paths": "API hot paths against raw SQL",
    "bulk": "Bulk writes",
    "three_way": "Three-way sync in bulk",
    "connections": "Connections: 16 threads",
    "settings": "Settings experiment: the API without prepared statements against the defaults",
    "async": "Async twins against their sync forms",
    "admin_scale": "Admin at scale",
    "import_throughput": "Import throughput",
}


@dataclass
class Job:
    """One benchmark process: a module, an engine, extra environment and arguments."""

    group: str
    module: str
    engine: str
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    label: str = ""
    timeout: float = 300.0


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


class ScratchDatabases:
    """A migrated template database per engine, and a fresh copy of it for each job."""

    def __init__(self, pg_url: str | None, workdir: Path, base_env: dict[str, str]) -> None:
        self.pg_url = pg_url
        self.workdir = workdir
        self.base_env = base_env
        self.prefix = f"lps_bench_{os.getpid()}"
        self.pg_databases: list[str] = []
        self.pg_template: str | None = None
        self.sqlite_template: Path | None = None
        self.pg_server_version = ""
        self._counter = 0

    # --- PostgreSQL ---
    def _pg_admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.pg_url, autocommit=True)

    def _pg_url_for(self, name: str) -> str:
        parts = urlsplit(self.pg_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))

    def prepare_postgresql(self) -> None:
        """Create and migrate the template database."""
        name = f"{self.prefix}_template"
        with self._pg_admin() as admin:
            self.pg_server_version = admin.execute("SHOW server_version").fetchone()[0]
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        self.pg_databases.append(name)
        self._migrate(self._pg_url_for(name))
        self.pg_template = name

    # --- SQLite ---
    def prepare_sqlite(self) -> None:
        """Create and migrate the template file."""
        path = self.workdir / "template.sqlite3"
        self._migrate(f"sqlite:///{path}")
        self.sqlite_template = path

    def _migrate(self, url: str) -> None:
        env = {**self.base_env, "DATABASE_URL": url}
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if completed.returncode:
            raise RuntimeError(f"migrate failed on {url.split('://')[0]}:\n{completed.stderr[-3000:]}")
        print(f"  migrated {url.split('://')[0]} scratch database in {time.perf_counter() - started:.1f}s")

    def fresh(self, engine: str) -> str:
        """A DATABASE_URL of a new migrated database of ``engine``, for one job."""
        self._counter += 1
        if engine == "postgresql":
            name = f"{self.prefix}_{self._counter}"
            with self._pg_admin() as admin:
                admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.pg_template}"')
            self.pg_databases.append(name)
            return self._pg_url_for(name)
        path = self.workdir / f"job{self._counter}.sqlite3"
        shutil.copyfile(self.sqlite_template, path)
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        """Drop one job's database (a PostgreSQL database, or the SQLite file and its WAL)."""
        if url.startswith("sqlite"):
            path = Path(urlsplit(url).path)
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").unlink()
            return
        name = urlsplit(url).path.lstrip("/")
        with self._pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with contextlib.suppress(ValueError):
            self.pg_databases.remove(name)

    def close(self) -> None:
        """Drop every scratch PostgreSQL database this run created."""
        if not self.pg_url or not self.pg_databases:
            return
        with self._pg_admin() as admin:
            for name in self.pg_databases:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.pg_databases.clear()


def plan_jobs(groups: list[str], engines: list[str], quick: bool) -> list[Job]:
    """The processes to run, in order."""
    jobs: list[Job] = []
    quick_args = ["--quick"] if quick else []
    for group in ("hot_paths", "bulk", "three_way"):
        if group in groups:
            for engine in engines:
                # The hot paths run with production settings (DEBUG off): what agents run (issue 20).
                env = PRODUCTION_ENV if group == "hot_paths" else {}
                jobs.append(Job(group, f"benchmarks.{group}", engine, env=dict(env), args=list(quick_args)))
    if "connections" in groups and "postgresql" in engines:
        for label, env in CONNECTION_SETUPS:
            jobs.append(
                Job(
                    "connections",
                    "benchmarks.connections",
                    "postgresql",
                    env=env,
                    args=[*quick_args, "--option", f"label={label}"],
                    label=label,
                )
            )
    for group in ("admin_scale", "import_throughput"):
        if group in groups and "postgresql" in engines:
            # Both are defined at PostgreSQL scale (a million conflicts, 200,000 imported rows).
            jobs.append(Job(group, f"benchmarks.{group}", "postgresql", args=list(quick_args), timeout=420.0))
    return jobs


def run_job(job: Job, scratch: ScratchDatabases, base_env: dict[str, str], workdir: Path) -> list[dict]:
    """Run one job in a fresh database and return its rows (an error row if it failed)."""
    url = scratch.fresh(job.engine)
    out = workdir / f"{job.group}-{job.engine}-{scratch._counter}.json"
    env = {**base_env, "DATABASE_URL": url, **job.env}
    command = [sys.executable, "-m", job.module, "--engine", job.engine, "--json-out", str(out), *job.args]
    title = f"{job.group} [{job.engine}]" + (f" {job.label}" if job.label else "")
    print(f"- {title} ...", flush=True)
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=job.timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        rows = [error_result(job.label or job.group, job.engine, exc)]
    else:
        if completed.returncode or not out.exists():
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-12:]
            print("    failed:\n      " + "\n      ".join(tail), flush=True)
            failure = RuntimeError(tail[-1] if tail else "no output")
            rows = [error_result(job.label or job.group, job.engine, failure)]
        else:
            rows = json.loads(out.read_text(encoding="utf-8"))
            print(f"    done in {time.perf_counter() - started:.1f}s ({len(rows)} results)", flush=True)
    finally:
        scratch.drop(url)
    for row in rows:
        row.setdefault("group", job.group)
    return rows


def connection_ratios(rows: list[dict]) -> list[dict]:
    """Turn the connection set-ups' operations/s into time ratios against the first set-up."""
    connection_rows = [row for row in rows if row["name"].startswith("connections") and row["value"]]
    if not connection_rows:
        return rows
    baseline = connection_rows[0]
    for row in connection_rows:
        row["baseline"] = baseline["value"]
        # A time ratio like every other figure: below 1 means faster than a connection per operation.
        row["ratio"] = round(baseline["value"] / row["value"], 3)
    return rows


# --- output ----------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def results_table(rows: list[dict]) -> list[str]:
    """The results as Markdown table lines."""
    lines = [
        "| benchmark | engine | measured | baseline | unit | ratio | note |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for row in rows:
        note = str(row.get("note", "")).replace("|", "\\|")
        lines.append(
            f"| {row['name']} | {row['engine']} | {_fmt(row['value'])} | {_fmt(row['baseline'])} "
            f"| {row['unit']} | {_fmt(row['ratio'])} | {note} |"
        )
    return lines


def print_table(rows: list[dict]) -> None:
    """Print the results as an aligned text table."""
    header = ("benchmark", "engine", "API", "baseline", "unit", "ratio")
    body = [
        (r["name"], r["engine"], _fmt(r["value"]), _fmt(r["baseline"]), r["unit"], _fmt(r["ratio"]))
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    for line in [header, tuple("-" * w for w in widths), *body]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
    errors = [r for r in rows if r["metric"] == "error"]
    for r in errors:
        print(f"! {r['name']} [{r['engine']}]: {r['note']}")


DEFAULT_HAND_SECTION = """## What changed because of them

(Maintained by hand: each change made because of a figure above, with its before/after.)
"""


def hand_section(path: Path) -> str:
    """The hand-written section of the existing docs file (between the markers), or a default."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if HAND_BEGIN in text and HAND_END in text:
            return text.split(HAND_BEGIN, 1)[1].split(HAND_END, 1)[0].strip("\n") + "\n"
    return DEFAULT_HAND_SECTION


def _setup(row: dict) -> str:
    return row["name"].split(": ", 1)[-1]


def connection_recommendation(rows: list[dict]) -> list[str]:
    """A generated paragraph naming the fastest connection set-up of this run, with numbers."""
    measured = [r for r in rows if r["name"].startswith("connections") and r["value"]]
    if not measured:
        return []
    best = max(measured, key=lambda r: r["value"])
    baseline = measured[0]
    lines = [
        f"Fastest set-up in this run: **{_setup(best)}** at {best['value']:,.0f} "
        f"operations/s, {best['value'] / baseline['value']:.1f}× a new connection per operation "
        f"({baseline['value']:,.0f} operations/s). All set-ups:",
        "",
    ]
    lines += [f"- {_setup(r)}: {r['value']:,.0f} operations/s ({r['note']})" for r in measured]
    return lines


def write_docs(
    path: Path,
    rows: list[dict],
    command: str,
    machine: dict[str, str],
    elapsed: float,
    date: str | None = None,
) -> None:
    """Rewrite docs/benchmarks.md: generated header and tables, then the kept hand-written section."""
    hand = hand_section(path)
    now = date or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `make bench` (benchmarks/run.py); only the hand-written section at the end",
        "     is kept when it rewrites this file. -->",
        "",
        "Every figure is a **ratio against a baseline measured in the same run**, moments apart on the",
        "same machine: the machine's speed cancels out, the ratio is what to compare across runs.",
        "The ratios of hot_paths, bulk, connections and settings are *time* ratios (time ÷ baseline time,",
        "so below 1 is faster than the baseline; for rows/s and operations/s, baseline rate ÷ rate);",
        "admin_scale and import_throughput define theirs in their notes and module docstrings.",
        "",
        f"- Command: `{command}`",
        f"- Date: {now}; whole run {elapsed / 60:.1f} min",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory']} memory, {machine['os']}",
        f"- Software: Python {machine['python']}, Django {machine['django']}, psycopg {machine['psycopg']}, "
        f"PostgreSQL {machine.get('postgresql', '-')}, SQLite {machine['sqlite']}",
        "",
        "How each is measured:",
        "",
        "- **hot_paths**: median per-operation time of the public API, with production settings (DEBUG off,",
        "  every other variable at its default), against the same SQL run through the driver: on PostgreSQL",
        "  `psycopg.connect()` with psycopg's own defaults (server-side binding, statements prepared after 5",
        "  runs); on SQLite sqlite3 opened with Django's settings. The raw side does the same Fernet work",
        "  (the field's own MultiFernet) where the API encrypts or decrypts. Calls alternate in rounds;",
        "  medians of many calls after a warm-up. Target for the one-row paths (store, token lookup with",
        "  decryption, last sync, mark synced, record history): ≤ 1.5 on PostgreSQL, goal ≤ 1.3.",
        "- **bulk**: rows/s of `save_planning_result` (100 features × 10 stories + 20 enablers, new session",
        "  each time; then the idempotent second call) and `LinearIssueCache.objects.upsert_many` (10,000",
        "  issues, new then existing) against `INSERT … ON CONFLICT` in bulk on the raw connection",
        "  (multi-row VALUES of 1,000 rows on PostgreSQL, `executemany` on SQLite).",
        "  Goal: ≥ 20,000 rows/s on PostgreSQL and a ratio ≤ 1.5.",
        "- **three_way**: items/s of `ItemSnapshot.objects.record_synced` (20,000 items, new then existing)",
        "  and `reconcile_many` (10,000 items: in sync, merged, in conflict) against the same work on the",
        "  raw connection (bulk upserts; for reconcile the same reads, `three_way` per item, the conflict",
        "  inserts). Goals on PostgreSQL: ≥ 20,000 and ≥ 5,000 items/s (benchmarks/three_way.py).",
        "- **connections**: 16 threads run a fixed number of hot-path operations, each ending like a request",
        "  does (`close_old_connections()`), under each connection set-up (its own process, configured by",
        "  environment variables as in production); baseline: a new connection per operation.",
        "- **settings**: on PostgreSQL the hot-path process also runs each API call on a second connection",
        "  with other database OPTIONS (`DB_PREPARED_STATEMENTS=false`; server-side binding without prepared",
        "  statements), interleaved with the same calls on the default connection (prepared statements):",
        "  API time with the setting ÷ with the defaults.",
        "- **async**: each async twin awaited in a running event loop (it hops to asgiref's shared thread",
        "  and back) against its sync form in the same process, rounds interleaved: twin ÷ sync.",
        "- **admin_scale**, **import_throughput**: defined by their own modules (benchmarks/admin_scale.py,",
        "  benchmarks/import_throughput.py).",
        "",
        "## Results",
        "",
    ]
    for group, title in GROUP_TITLES.items():
        group_rows = [row for row in rows if row.get("group") == group]
        if not group_rows:
            continue
        lines += [f"### {title}", "", *results_table(group_rows), ""]
        if group == "connections":
            lines += [*connection_recommendation(group_rows), ""]
    lines += [HAND_BEGIN, hand.rstrip("\n"), HAND_END, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lps-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the jobs, print and record the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("DATABASE_URL", DEFAULT_PG_URL),
        help="a PostgreSQL server URL whose user may CREATE DATABASE (scratch databases)",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run; does not rewrite the docs")
    parser.add_argument(
        "--only", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}"
    )
    parser.add_argument("--engines", default="postgresql,sqlite", help="comma-separated: postgresql,sqlite")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the Markdown file to rewrite")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave the docs alone")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="run nothing: rewrite the docs from a saved run (benchmarks/results/latest.json)",
    )
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text(encoding="utf-8"))
        write_docs(
            args.docs,
            saved["results"],
            saved["command"],
            saved["machine"],
            saved["elapsed"],
            saved.get("date"),
        )
        print(f"Wrote {args.docs}")
        return 0
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(groups) - set(GROUPS)) + sorted(set(engines) - {"postgresql", "sqlite"})
    if unknown:
        parser.error(f"unknown group or engine: {', '.join(unknown)}")
    if args.pg_url.startswith("sqlite"):
        parser.error("--pg-url must be a PostgreSQL URL (the SQLite scratch file is created by the runner)")

    started = time.perf_counter()
    base_env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    base_env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            # DEBUG gives development defaults for SECRET_KEY; the benchmark processes turn query logging
            # off themselves. Two Fernet keys, so the token fields use a MultiFernet as after a rotation.
            "DEBUG": "true",
            "FERNET_KEYS": f"{_fernet_key()},{_fernet_key()}",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            "PYTHONHASHSEED": "0",
        }
    )
    machine = machine_info()
    rows: list[dict] = []
    failed = False
    with _workdir() as workdir:
        scratch = ScratchDatabases(args.pg_url if "postgresql" in engines else None, workdir, base_env)
        try:
            print("Preparing scratch databases")
            if "postgresql" in engines:
                scratch.prepare_postgresql()
                machine["postgresql"] = scratch.pg_server_version
            if "sqlite" in engines:
                scratch.prepare_sqlite()
            for job in plan_jobs(groups, engines, args.quick):
                job_rows = run_job(job, scratch, base_env, workdir)
                failed = failed or any(r["metric"] == "error" for r in job_rows)
                rows.extend(job_rows)
        finally:
            scratch.close()
    rows = connection_ratios(rows)
    elapsed = time.perf_counter() - started
    print()
    print_table(rows)
    print(f"\nWhole run: {elapsed:.0f}s")
    command = "make bench" if not argv and os.environ.get("MAKELEVEL") else "python -m benchmarks.run"
    if args.quick:
        command += " --quick"
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    RESULTS_DIR.mkdir(exist_ok=True)
    saved = {"command": command, "date": date, "elapsed": elapsed, "machine": machine, "results": rows}
    (RESULTS_DIR / ("quick.json" if args.quick else "latest.json")).write_text(
        json.dumps(saved, indent=2), encoding="utf-8"
    )
    if not (args.quick or args.no_docs):
        write_docs(args.docs, rows, command, machine, elapsed, date)
        print(f"Wrote {args.docs.relative_to(ROOT) if args.docs.is_relative_to(ROOT) else args.docs}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
