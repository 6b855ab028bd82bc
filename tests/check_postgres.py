"""Exit 0 when the PostgreSQL server of the given URL accepts connections, 1 (saying why) when not.

Used by `make test` to decide whether the PostgreSQL run can happen.
"""

import sys

import environ
import psycopg


def main(url: str) -> int:
    cfg = environ.Env.db_url_config(url)
    try:
        with psycopg.connect(
            host=cfg.get("HOST") or None,
            port=cfg.get("PORT") or None,
            user=cfg.get("USER") or None,
            password=cfg.get("PASSWORD") or None,
            dbname=cfg.get("NAME") or "postgres",
            connect_timeout=5,
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        print(f"PostgreSQL at {cfg.get('HOST')}:{cfg.get('PORT')} is unreachable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
