"""Hot paths: INSERTs and SELECTs whose SQL is compiled once.

Why it exists: Django compiles the SQL of every ``save()`` and every queryset anew and has
no prepared statements. The HL7 intake inserts and reads the same few shapes of row for
every message (the message log, patient, order, procedure, step, the device registry),
and on PostgreSQL about a third of its time per message went to compiling those
statements (README, "HL7 intake"). The MPPS N-CREATE / N-SET insert the performed step
and the RIS outbox's messages, and read the instance by its UID, for every request; a
worklist C-FIND spent most of its CPU building and compiling its two querysets (README,
"Worklist C-FIND"). Here each shape is compiled by Django once and its SQL kept; later
calls only convert the values and execute.

What it depends on (Django's private API, checked against the version in
``WRITTEN_FOR`` by the system check ``broker.E020`` at start-up; re-check this module
before changing that pin):

- ``Model._do_insert(manager, using, fields, returning_fields, raw)``: its signature, and
  that ``save()`` calls it through ``self``, so an instance attribute can shadow it;
- ``Manager._insert(objs, fields, returning_fields, using, raw, on_conflict)``;
- ``django.db.models.sql.InsertQuery(model, on_conflict=...)``, ``insert_values()``, its
  compiler's ``returning_fields``, ``returning_params``, ``as_sql()`` returning one
  ``(sql, params)`` pair per row, ``get_converters()`` and ``apply_converters()``;
- ``SQLCompiler.select`` as ``(col, sql, alias)`` triples after ``as_sql()``, whose
  ``col.target`` is the model field;
- ``OnConflict.IGNORE`` compiling to ``ON CONFLICT DO NOTHING`` / ``INSERT OR IGNORE``;
- ``BinaryField.get_placeholder`` being ``connection.ops.binary_placeholder_sql(value)``;
- for ``values_rows``: ``QuerySet._iterable_class`` being ``ValuesListIterable`` for a
  plain ``values_list()``, which yields ``SQLCompiler.results_iter(tuple_expected=True)``:
  the converters of ``select[:col_count]`` applied to each row; ``has_extra_select``;
  ``has_composite_fields()``.

``tests/test_fastpath.py`` checks that the rows written and read here are exactly the
rows ``Model.save()`` and the ORM write and read, column by column, on both databases;
``tests/test_mwl_statements.py`` that the worklist's cached statements are Django's, and
return the rows (and order) of its querysets, for many queries.
Nothing here knows an app: it works on any model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable
from enum import Enum
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection, connections, models
from django.db.models import QuerySet
from django.db.models.constants import OnConflict
from django.db.models.query import ValuesListIterable
from django.db.models.sql import InsertQuery

M = TypeVar("M", bound=models.Model)

# The Django release (major.minor) whose private API this module was written against.
WRITTEN_FOR = "5.2"


# INSERT statements built once per (model, backend, columns): Django compiles the SQL of
# every save(); intake inserts the same few shapes of row all day.
_INSERT_SQL: dict[tuple[Any, ...], str] = {}


def insert_row(instance: models.Model, *, ignore_conflicts: bool = False) -> bool:
    """``instance.save(force_insert=True)``, with the statement's SQL built only once.

    ``save()`` still runs (the models' derived columns: name keys, start date/time;
    auto_now values; signals); only its INSERT is replaced, by the same SQL, cached.
    ``ignore_conflicts``: ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` (``INSERT OR
    IGNORE`` on SQLite): a row refused for a taken unique key neither raises nor aborts
    the transaction; returns False then. Only on backends that return columns from an
    INSERT (PostgreSQL, SQLite >= 3.35); elsewhere Django's own path, unchanged.
    """
    inserted = True
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None

    def do_insert(
        manager: models.Manager[Any],
        using: str,
        fields: list[models.Field[Any, Any]],
        returning_fields: list[models.Field[Any, Any]],
        raw: bool,
    ) -> list[Any]:
        nonlocal inserted
        db = connections[using]
        if not db.features.can_return_columns_from_insert:
            return list(
                manager._insert(  # type: ignore[attr-defined]
                    [instance],
                    fields=fields,
                    returning_fields=returning_fields,
                    using=using,
                    raw=raw,
                    on_conflict=on_conflict,
                )
            )
        key = (
            type(instance),
            db.vendor,
            on_conflict,
            tuple(f.attname for f in fields),
            tuple(f.attname for f in returning_fields),
        )
        sql = _INSERT_SQL.get(key) if not raw else None
        cached = sql is not None
        params: list[Any] | None = None
        converters: dict[int, Any] = {}
        compiler = None
        if sql is not None:
            values = [f.pre_save(instance, True) for f in fields]
            if any(hasattr(v, "resolve_expression") for v in values) or not _plain_placeholders(
                fields, instance, db
            ):
                sql = None  # an expression as a value, or another placeholder: Django's way
                cached = False
            else:
                params = [
                    f.get_db_prep_save(v, connection=db)
                    for f, v in zip(fields, values, strict=True)
                ]
        if sql is None:
            query = InsertQuery(type(instance), on_conflict=on_conflict)
            query.insert_values(fields, [instance], raw=raw)
            compiler = query.get_compiler(using=using)
            compiler.returning_fields = returning_fields
            [(sql, compiled)] = compiler.as_sql()
            params = list(compiled)
            table = type(instance)._meta.db_table
            converters = compiler.get_converters([f.get_col(table) for f in returning_fields])
            if (
                not raw
                and returning_fields
                and not converters
                and not compiler.returning_params
                and sql.count("%s") == len(fields)
                and _plain_placeholders(fields, instance, db)
                and not any(hasattr(v, "as_sql") for v in params)
            ):
                _INSERT_SQL[key] = sql
        with _bound_cursor(db) if cached else db.cursor() as cursor:
            cursor.execute(sql, params)
            if not returning_fields:
                return []
            row = cursor.fetchone()  # INSERT ... RETURNING: one row, or none if ignored
        if row is None:  # nothing returned: the row was not inserted
            inserted = False
            return []
        if converters and compiler is not None:
            return [tuple(r) for r in compiler.apply_converters([row], converters)]
        return [tuple(row)]

    # An attribute of this instance shadows Model._do_insert for this save only.
    setattr(instance, "_do_insert", do_insert)  # noqa: B010
    try:
        instance.save(force_insert=True)
    finally:
        delattr(instance, "_do_insert")
    return inserted


class _PreparedCursor(psycopg.Cursor[Any]):
    """A psycopg cursor that binds parameters on the server and prepares its statements.

    Django's own PostgreSQL cursor binds on the client (``ClientCursor``: every value
    quoted into the SQL text in Python, and the text parsed and planned by the server
    anew) and prepares nothing. The fast path's statements are the same few all day:
    bound on the server they skip the quoting, and prepared (once per connection,
    psycopg keeps the names) they skip the parse and plan.
    """

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: Any = None
    ) -> Any:
        return super().execute(
            query,
            params,
            prepare=PREPARED_STATEMENTS if prepare is None else prepare,
            binary=binary,
        )


# Prepared statements do not survive a connection pooler in transaction mode that does
# not track them (PgBouncer before 1.21): DATABASE_PREPARED_STATEMENTS=false then.
PREPARED_STATEMENTS: bool = settings.DATABASE_PREPARED_STATEMENTS


def _bound_cursor(db: Any) -> Any:
    """A cursor for cached SQL: on PostgreSQL a ``_PreparedCursor`` on this thread's
    connection, wrapped as Django wraps its own (error translation, query logging)."""
    if db.vendor != "postgresql":
        return db.cursor()
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        raw = _PreparedCursor(db.connection)
    db.validate_thread_sharing()
    return db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw)


def _plain_placeholders(
    fields: list[models.Field[Any, Any]], instance: models.Model, db: Any
) -> bool:
    """Whether every value goes into the INSERT as a plain ``%s``, as the cached SQL has it.

    A field with a placeholder of its own (``get_placeholder``) is only allowed when it is
    a ``BinaryField``, whose placeholder is ``connection.ops.binary_placeholder_sql(value)``
    ("%s" on PostgreSQL and SQLite; "_binary %s" on MySQL), checked for each value (the
    instance's, after ``pre_save``).
    """
    for f in fields:
        if not hasattr(f, "get_placeholder"):
            continue
        if not isinstance(f, models.BinaryField):
            return False
        if db.ops.binary_placeholder_sql(getattr(instance, f.attname)) != "%s":
            return False
    return True


# SELECTs of whole rows that the intake runs for every message, compiled once per
# (model, backend, caller's key): (SQL, field names, converters).
_SELECT_SQL: dict[tuple[Any, ...], tuple[str, list[str], dict[int, Any]]] = {}


def select_rows(
    model: type[M], key: Hashable, params: list[Any], queryset: Callable[[], QuerySet[M]]
) -> list[M]:
    """``list(queryset())``, with the query's SQL compiled only once per ``key``.

    ``params`` are the query's parameters in Django's order, computed by the caller; the
    cached SQL is only kept when they equal Django's own for the first query of this
    key, and when the query selects exactly the model's concrete fields (no joins,
    annotations or deferred fields). Otherwise Django runs the query, every time.
    """
    db = connection
    cache_key = (model, db.vendor, key)
    cached = _SELECT_SQL.get(cache_key)
    if cached is None:
        query = queryset()
        compiled = _compiled(query)
        if compiled is None:
            return []
        compiler, sql, django_params = compiled
        select = [col for col, _, _ in compiler.select]
        fields = [getattr(col, "target", None) for col in select]
        concrete = [f.attname for f in model._meta.concrete_fields]
        if (
            list(django_params) != params
            or any(f is None for f in fields)
            or [f.attname for f in fields if f is not None] != concrete
        ):
            return list(query)
        cached = (sql, concrete, compiler.get_converters(select))
        _SELECT_SQL[cache_key] = cached
    sql, field_names, converters = cached
    with _bound_cursor(db) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [model.from_db(db.alias, field_names, row) for row in _converted(rows, converters)]


def _compiled(query: QuerySet[Any, Any]) -> tuple[Any, str, Any] | None:
    """The compiler of ``query`` on this thread's connection, its SQL and its
    parameters; None when the query can match nothing (``EmptyResultSet``)."""
    compiler = query.query.get_compiler(using=connection.alias)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return None
    return compiler, sql, params


def _converted(rows: list[Any], converters: dict[int, Any]) -> list[Any]:
    """``rows`` with the compiler's ``converters`` applied, as
    ``SQLCompiler.apply_converters`` does, with this thread's connection."""
    if not converters:
        return rows
    converted = []
    for row in rows:
        values = list(row)
        for pos, (convs, expression) in converters.items():
            for convert in convs:
                values[pos] = convert(values[pos], expression, connection)
        converted.append(values)
    return converted


# SELECTs of column values (``values_list()``), compiled once per (backend, caller's key):
# (SQL, converters). A peer chooses the shapes of its queries, so the number kept is
# bounded; past it, Django compiles every query of a new shape, as it does without cache.
_VALUES_SQL: dict[tuple[Any, ...], tuple[str, dict[int, Any]]] = {}
VALUES_SQL_KEPT = 1000


def bind_value(value: Any) -> Any:
    """``value`` as Django passes it to this connection's cursor for a date, time or
    date-time column (SQLite: text); a choice (``TextChoices`` member) as its value, which
    it equals; any other value unchanged."""
    if isinstance(value, Enum):
        return value.value
    ops = connection.ops
    if isinstance(value, dt.datetime):
        return ops.adapt_datetimefield_value(value)
    if isinstance(value, dt.date):
        return ops.adapt_datefield_value(value)
    if isinstance(value, dt.time):
        return ops.adapt_timefield_value(value)
    return value


def values_rows(
    key: Hashable, params: list[Any], queryset: Callable[[], QuerySet[Any, Any]]
) -> list[tuple[Any, ...]]:
    """``list(queryset())`` for a ``values_list()`` queryset (not ``flat``, not
    ``named``), with its SQL compiled only once per ``key``.

    ``key`` must tell apart every query whose SQL differs (all but the parameter values);
    ``params`` are its parameters in Django's order, as Django binds them
    (``bind_value``). The SQL is kept only when they equal Django's own for the first
    query of this key; otherwise, or for any other kind of queryset, Django runs it.
    """
    db = connection
    cache_key = (db.vendor, key)
    cached = _VALUES_SQL.get(cache_key)
    if cached is None:
        query = queryset()
        compiled = _compiled(query)
        if compiled is None:
            return []
        compiler, sql, django_params = compiled
        select = [col for col, _, _ in compiler.select[: compiler.col_count]]
        if (
            query._iterable_class is not ValuesListIterable
            or compiler.has_extra_select
            or compiler.has_composite_fields(select)
            or list(django_params) != params
            or len(_VALUES_SQL) >= VALUES_SQL_KEPT
        ):
            return list(query)
        cached = (sql, compiler.get_converters(select))
        _VALUES_SQL[cache_key] = cached
    sql, converters = cached
    with _bound_cursor(db) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [tuple(row) for row in _converted(rows, converters)]
