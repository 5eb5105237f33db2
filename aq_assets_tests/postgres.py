"""The local PostgreSQL the tests create databases and roles in, under unique names dropped
afterwards (127.0.0.1:5432, trust auth on this machine; AQ_TEST_PG_HOST/PORT/USER and
PGPASSWORD point elsewhere). A test that needs it fails, naming the fix, when it is missing:
a skipped test would look green and prove nothing."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

PG_HOST = os.environ.get("AQ_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("AQ_TEST_PG_PORT", "5432"))
PG_ADMIN = os.environ.get("AQ_TEST_PG_USER", "postgres")


def admin_sql(*statements: str) -> None:
    """Run statements as the admin user on the `postgres` database, each committed."""
    import psycopg2

    con = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_ADMIN, dbname="postgres")
    con.autocommit = True
    try:
        with con.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        con.close()


def require_postgres(needed_for: str) -> None:
    try:
        import psycopg2  # noqa: F401  (dagster-postgres brings it)
    except ImportError:
        pytest.fail("psycopg2 is missing: install the locked dependencies (dagster-postgres).")
    try:
        admin_sql("SELECT 1")
    except Exception as exc:
        pytest.fail(
            f"No PostgreSQL at {PG_HOST}:{PG_PORT} for user {PG_ADMIN} ({exc}). {needed_for} "
            "needs one where that user may create databases and roles (apt-get install "
            "postgresql; AQ_TEST_PG_HOST/PORT/USER and PGPASSWORD to point elsewhere)."
        )


def unique_name(purpose: str) -> str:
    return f"aq_test_{uuid.uuid4().hex[:10]}_{purpose}"


@contextlib.contextmanager
def scratch_database(purpose: str) -> Iterator[str]:
    """A new database owned by the admin user, as a postgresql:// URL; dropped afterwards."""
    require_postgres(f"A {purpose} test")
    name = unique_name(purpose)
    admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{PG_ADMIN}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with contextlib.suppress(Exception):
            admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
