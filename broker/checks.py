"""System checks for the broker's configuration (ids ``broker.E0xx``)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

from core import fastpath
from core.dicom import net

# (distribution, release written for, the modules that use its private API)
PRIVATE_API = (
    ("Django", fastpath.WRITTEN_FOR, "core/fastpath.py"),
    (
        "pynetdicom",
        net.PYNETDICOM_WRITTEN_FOR,
        "core/dicom/net.py, broker/dicom/server.py and broker/dicom/guard.py",
    ),
)


@register(Tags.compatibility, deploy=False)
def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = [Error(f"{p.variable}: {p.message}", id=p.check_id) for p in settings.CONFIG_PROBLEMS]
    if settings.SECRET_KEY_MISSING and not settings.DEBUG:
        errors.append(
            Error(
                "SECRET_KEY: must be set outside DEBUG "
                "(or SECRET_KEY_FILE must name a file holding it)",
                id="broker.E010",
            )
        )
    if bool(settings.DICOM_TLS_CERT) != bool(settings.DICOM_TLS_KEY):
        errors.append(
            Error(
                "DICOM_TLS_CERT, DICOM_TLS_KEY: set both or neither",
                id="broker.E011",
            )
        )
    if bool(settings.HL7_TLS_CERT) != bool(settings.HL7_TLS_KEY):
        errors.append(Error("HL7_TLS_CERT, HL7_TLS_KEY: set both or neither", id="broker.E012"))
    ports = {
        "BROKER_HTTP_PORT": settings.BROKER_HTTP_PORT,
        "BROKER_DICOM_PORT": settings.BROKER_DICOM_PORT,
        "BROKER_HL7_PORT": settings.BROKER_HL7_PORT,
    }
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            errors.append(Error(f"{name}: port {port} is also {seen[port]}", id="broker.E013"))
        seen[port] = name
    return errors


@register(Tags.database)
def check_durability(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Error]:
    """An ACK promises the message is stored: the database must not acknowledge a commit
    before it is on disk (PostgreSQL synchronous_commit=off, SQLite synchronous<FULL).

    Runs with ``manage.py check --database default`` and ``migrate``.
    """
    from django.db import connections

    errors: list[Error] = []
    for alias in databases or []:
        conn = connections[alias]
        with conn.cursor() as cursor:
            if conn.vendor == "postgresql":
                cursor.execute("SHOW synchronous_commit")
                value = cursor.fetchone()[0]
                if value == "off":
                    errors.append(
                        Error(
                            f"database {alias}: synchronous_commit is off, so an ACKed "
                            "message can be lost in a crash; turn it on",
                            id="broker.E015",
                        )
                    )
            elif conn.vendor == "sqlite":
                cursor.execute("PRAGMA synchronous")
                level = cursor.fetchone()[0]
                if level < 2 and settings.SQLITE_SYNCHRONOUS == "FULL":
                    errors.append(
                        Error(f"database {alias}: SQLite synchronous={level}", id="broker.E015")
                    )
    return errors


def private_api_problems(installed: Mapping[str, str]) -> list[Error]:
    """One error per library whose installed release is not the one our private-API code
    was written for (``installed``: distribution -> version)."""
    errors = []
    for distribution, written_for, modules in PRIVATE_API:
        found = installed[distribution]
        if found != written_for and not found.startswith(written_for + "."):
            errors.append(
                Error(
                    f"{distribution} {found} is installed, but {modules} use its private API "
                    f"as of {written_for}: re-check them against {found}, then update the "
                    "version they were written for",
                    id="broker.E020",
                )
            )
    return errors


@register(Tags.compatibility, deploy=False)
def check_private_api(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    return private_api_problems({d: version(d) for d, _, _ in PRIVATE_API})


def configuration_errors() -> list[str]:
    """One line per problem, for processes that start without ``manage.py``."""
    return [f"({e.id}) {e.msg}" for e in (*check_configuration(), *check_private_api())]
