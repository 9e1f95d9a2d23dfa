"""A worklist query's rows from SQL compiled once per query *shape* (``core.fastpath``).

Building a query's ``QuerySet`` (one ``filter()`` per matching key, each resolving its
joins) and compiling it took most of a C-FIND's CPU, several times what the database
needs to run it (README, "Worklist C-FIND"). Scanners send the same few queries all day
with other values (today's date), so the SQL is compiled by Django once per shape and
kept; a later query of that shape only binds its values.

The shape of a query is read from the conditions :func:`worklist.matching.match` built
(``Matching.filters``), without building the queryset:

1. walk each condition's tree in the order Django compiles it: a ``Q`` node's children
   in order, a lookup's left-hand side, then its value(s);
2. note what decides the SQL text: node connectors, lookup paths and classes, the
   expressions matched on, each value's type, the length of a list (duplicates
   removed, as ``In`` does), a subquery's own conditions;
3. collect the parameters on the way, as Django binds them: the annotations' constants
   (selected first, then wherever a condition uses one), each value, a wildcard
   pattern in its GLOB / LIKE form.

The shape, the selected columns and the limit make the cache key; ``core.fastpath``
keeps the SQL only when the parameters found here equal Django's own for the first
query of a shape. Anything this walk does not know (another kind of condition) makes
the query go through Django every time.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from django.db import connection
from django.db.models import F, Q, QuerySet, Value
from django.db.models.expressions import Col, Func
from django.db.models.lookups import Exact, In
from django.db.models.sql.where import WhereNode

from core import fastpath
from worklist.attributes import ANNOTATIONS
from worklist.matching import DicomWildcard, Matching
from worklist.models import ScheduledProcedureStep, StationAETitle

ORDER = ("start_date", "start_time", "pk")


class _Unknown(Exception):
    """A condition this walk does not know: run the query through Django."""


def step_queryset(
    matching: Matching, columns: Sequence[str], limit: int
) -> QuerySet[ScheduledProcedureStep, Any]:
    """The ORM query of :func:`step_rows`."""
    query = matching.queryset
    annotations = {c: ANNOTATIONS[c] for c in columns if c in ANNOTATIONS}
    if annotations:
        query = query.annotate(**annotations)
    return query.order_by(*ORDER).values_list(*columns)[:limit]


def step_rows(matching: Matching, columns: Sequence[str], limit: int) -> list[tuple[Any, ...]]:
    """``matching``'s steps, ``columns`` of each, by start then pk, at most ``limit``."""
    try:
        key, params = shape(matching, columns)
    except _Unknown:
        return list(step_queryset(matching, columns, limit))
    return fastpath.values_rows(
        ("steps", key, tuple(columns), limit),
        params,
        lambda: step_queryset(matching, columns, limit),
    )


def station_rows(step_ids: list[int]) -> list[tuple[int, str]]:
    """``(step_id, ae_title)`` of the given steps, by step then pk."""
    return fastpath.values_rows(
        ("stations", len(step_ids)),
        list(step_ids),
        lambda: (
            StationAETitle.objects.filter(step_id__in=step_ids)
            .order_by("step_id", "pk")
            .values_list("step_id", "ae_title")
        ),
    )


def shape(matching: Matching, columns: Sequence[str]) -> tuple[Hashable, list[Any]]:
    """The shape of the query (what decides its SQL) and its parameters, in order."""
    params: list[Any] = []
    selected = tuple(_expression(F(c), params) for c in columns if c in ANNOTATIONS)
    filters = tuple(_node(condition, params) for condition in matching.filters)
    return (matching.annotations, selected, filters), params


def _node(node: Any, params: list[Any]) -> Hashable:
    if isinstance(node, Q | WhereNode):
        children = tuple(_node(child, params) for child in node.children)
        return (type(node).__name__, node.connector, node.negated, children)
    if isinstance(node, tuple):  # ("path__lookup", value) from Q(**kwargs)
        path, value = node
        head = path.split("__", 1)[0]
        lhs = _expression(F(head), params) if head in ANNOTATIONS else ()
        return ("kw", path, lhs, _value(value, params))
    if isinstance(node, DicomWildcard):
        lhs = _expression(node.lhs, params)
        params.append(node.bound_pattern(connection.vendor))
        return ("wildcard", lhs)
    if isinstance(node, In) and isinstance(node.rhs, list | tuple):
        lhs = _expression(node.lhs, params)
        return ("in", lhs, _value(node.rhs, params))
    if type(node) is Exact and isinstance(node.rhs, Value):
        # Exact wraps a plain value in Value when its left-hand side is an expression.
        return ("exact", _expression(node.lhs, params), _expression(node.rhs, params))
    raise _Unknown(type(node).__name__)


def _value(value: Any, params: list[Any]) -> Hashable:
    if isinstance(value, QuerySet):
        # A subquery: its own conditions, on a query of one model and its values().
        query = value.query
        if query.low_mark or query.high_mark is not None or query.order_by or query.annotations:
            raise _Unknown("subquery")
        where = _node(query.where, params)
        return ("subquery", query.model, tuple(query.values_select), where)
    if isinstance(value, list | tuple):
        # In drops duplicates and None, keeping the first of each.
        values = list(dict.fromkeys(v for v in value if v is not None))
        params += [fastpath.bind_value(v) for v in values]
        return ("list", len(values), tuple(sorted({type(v).__name__ for v in values})))
    if value is None or isinstance(value, bool) or hasattr(value, "resolve_expression"):
        raise _Unknown(type(value).__name__)
    params.append(fastpath.bind_value(value))
    return type(value).__name__


def _expression(expression: Any, params: list[Any]) -> Hashable:
    """The shape of a matched expression; its constants go into ``params``."""
    if isinstance(expression, F):
        name: str = expression.name  # type: ignore[attr-defined]  # not in django-stubs
        if name in ANNOTATIONS:
            return ("annotation", name, _expression(ANNOTATIONS[name], params))
        return ("F", name)
    if isinstance(expression, Col):
        return ("col", expression.alias, expression.target.model, expression.target.name)
    if isinstance(expression, Value):
        params.append(fastpath.bind_value(expression.value))
        return ("value", type(expression.value).__name__)
    if isinstance(expression, Func):
        sources = tuple(_expression(s, params) for s in expression.get_source_expressions())
        return (type(expression).__name__, sources)
    raise _Unknown(type(expression).__name__)
