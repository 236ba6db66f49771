"""jobcron/contrib/columns.py, the ORM models built from it and the migrations stay in step.

A migration that adds a column to processing_jobs, files or insights fails the first test until
columns.py says what an application may do with it, and the model tests until the models map it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobcron.contrib.columns import APP, COLUMNS, INTERNAL, SERVER, mapped, writable

Conn = psycopg.Connection[dict[str, Any]]
REPO = Path(__file__).resolve().parents[2]


def table_columns(conn: Conn, table: str) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT column_name, is_nullable = 'YES' AS nullable, column_default IS NOT NULL AS has_default "
        "FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s "
        "ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return {r["column_name"]: r for r in rows}


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_every_column_of_the_schema_is_classified(conn: Conn, table: str) -> None:
    in_db = list(table_columns(conn, table))
    unlisted = [c for c in in_db if c not in COLUMNS[table]]
    assert not unlisted, f"{table}.{unlisted[0]} exists in the schema but not in jobcron/contrib/columns.py"
    gone = [c for c in COLUMNS[table] if c not in in_db]
    assert not gone, f"{table}.{gone[0]} is in jobcron/contrib/columns.py but no longer in the schema"


@pytest.mark.parametrize("table", ["processing_jobs", "files"])
def test_the_enqueuer_may_insert_exactly_the_columns_an_application_sets(table: str) -> None:
    roles_sql = (REPO / "deploy" / "sql" / "roles.sql").read_text()
    grant = re.search(rf"GRANT INSERT \(([^)]*)\)\s+ON {table} TO", roles_sql)
    assert grant, f"roles.sql grants no INSERT on {table}"
    granted = sorted(c.strip() for c in grant.group(1).split(","))
    assert granted == sorted(writable(table))


def django_models() -> dict[str, Any]:
    pytest.importorskip("django", reason="the test extra installs Django 5")
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(INSTALLED_APPS=["jobcron.contrib.django"], USE_TZ=True)
        django.setup()
    from jobcron.contrib.django import models

    return {"processing_jobs": models.Job, "files": models.File, "insights": models.Insight}


def django_problems(conn: Conn, table: str) -> list[str]:
    """How the Django model of a table disagrees with the migrated schema and columns.py; [] if it does not."""
    model = django_models()[table]
    from jobcron.contrib.django.models import ServerOwned

    name = f"{model.__name__} (jobcron.contrib.django)"
    fields = {f.column: f for f in model._meta.concrete_fields}
    in_db = table_columns(conn, table)
    problems = [
        f"{table}.{c} is in the schema but {name} does not map it: add a field, or list it INTERNAL in columns.py"
        for c in in_db
        if c not in fields and COLUMNS[table].get(c) != INTERNAL
    ]
    problems += [
        f"{name} maps {table}.{c}, which columns.py keeps internal" for c in fields if c not in mapped(table)
    ]
    problems += [f"{name} maps {table}.{c}, which the schema does not have" for c in fields if c not in in_db]
    for column, field in fields.items():
        if column not in in_db:
            continue
        where = f"{model.__name__}.{field.name} ({table}.{column})"
        if field.null != in_db[column]["nullable"]:
            problems.append(f"{where}: null={field.null} but the column says otherwise")
        if table == "insights":
            continue  # the daemon writes insights; applications only read them
        kind = COLUMNS[table][column]
        if isinstance(field, ServerOwned) != (kind == SERVER):
            problems.append(f"{where}: must be server-owned iff {kind}")
        if kind == APP and in_db[column]["has_default"] != field.has_db_default():
            problems.append(
                f"{where}: db_default={field.has_db_default()} but the column's default disagrees"
            )
    return problems


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_the_django_models_map_every_column_as_columns_py_says(conn: Conn, table: str) -> None:
    assert django_problems(conn, table) == []


def test_a_column_a_migration_adds_fails_the_django_check_naming_model_and_column(conn: Conn) -> None:
    conn.execute("ALTER TABLE processing_jobs ADD COLUMN tenant text NOT NULL DEFAULT 'main'")
    conn.execute("ALTER TABLE files ALTER COLUMN original_name SET NOT NULL")
    conn.execute("ALTER TABLE processing_jobs ALTER COLUMN max_retries SET DEFAULT 3")
    assert django_problems(conn, "processing_jobs") == [
        "processing_jobs.tenant is in the schema but Job (jobcron.contrib.django) does not map it: "
        "add a field, or list it INTERNAL in columns.py",
        "Job.max_retries (processing_jobs.max_retries): db_default=False but the column's default disagrees",
    ]
    assert django_problems(conn, "files") == [
        "File.original_name (files.original_name): null=True but the column says otherwise"
    ]


def test_the_table_list_names_every_table_the_migrations_create(conn: Conn) -> None:
    from jobcron.contrib.columns import TABLES

    found = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()
    assert sorted(r["tablename"] for r in found) == sorted(TABLES)


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_the_sqlalchemy_models_map_every_column_as_columns_py_says(conn: Conn, table: str) -> None:
    pytest.importorskip("sqlalchemy", reason="the test extra installs SQLAlchemy 2")
    from sqlalchemy import FetchedValue

    from jobcron.contrib.sqlalchemy import metadata

    model = metadata.tables[table]
    columns = {c.name: c for c in model.columns}
    missing = [c for c in mapped(table) if c not in columns]
    assert not missing, f"jobcron.contrib.sqlalchemy does not map {table}.{missing[0]}"
    extra = [c for c in columns if c not in mapped(table)]
    assert not extra, f"jobcron.contrib.sqlalchemy maps {table}.{extra[0]}, which columns.py keeps internal"
    in_db = table_columns(conn, table)
    for name, column in columns.items():
        where = f"jobcron.contrib.sqlalchemy {table}.{name}"
        assert column.nullable == in_db[name]["nullable"], f"{where}: nullable={column.nullable} disagrees"
        if table == "insights":
            continue
        kind = COLUMNS[table][name]
        server_written = type(column.server_default) is FetchedValue
        assert server_written == (kind == SERVER), f"{where}: FetchedValue iff {kind}"
        if kind == APP and in_db[name]["has_default"]:
            assert column.server_default is not None, f"{where}: the column has a server default; map it"


def test_alembic_autogenerate_leaves_jobcron_alone_with_the_filter(dsn: str) -> None:
    pytest.importorskip("alembic", reason="the test extra installs alembic")
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import Column, Integer, MetaData, Table, Text

    from jobcron.contrib.sqlalchemy import include_object
    from tests.clientapps.sqlalchemy_app import engine_for

    app = MetaData()  # the application's own models, in the same schema as jobcron's tables
    Table("orders", app, Column("id", Integer, primary_key=True), Column("note", Text))
    engine = engine_for(dsn)
    try:
        with engine.connect() as c:
            filtered = compare_metadata(
                MigrationContext.configure(c, opts={"include_object": include_object}), app
            )
            unfiltered = compare_metadata(MigrationContext.configure(c), app)
    finally:
        engine.dispose()
    assert [(d[0], d[1].name) for d in filtered] == [("add_table", "orders")]
    dropped = {d[1].name for d in unfiltered if isinstance(d, tuple) and d[0] == "remove_table"}
    assert {"processing_jobs", "job_schedules", "jobcron_migrations"} <= dropped  # what the filter prevents
