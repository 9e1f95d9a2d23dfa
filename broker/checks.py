"""System checks for the broker's configuration (ids ``broker.E0xx``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


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


@register(Tags.compatibility)
def check_pynetdicom_version(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """broker.dicom.guard uses pynetdicom's internals as they are in one version."""
    import pynetdicom

    from broker.dicom import guard

    if guard.version_matches():
        return []
    return [
        Error(
            f"pynetdicom {pynetdicom.__version__} is installed but broker.dicom.guard was "
            f"written for {guard.PYNETDICOM_VERSION}: check the internals its docstring "
            "lists, then update PYNETDICOM_VERSION",
            id="broker.E014",
        )
    ]


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


def configuration_errors() -> list[str]:
    """One line per problem, for processes that start without ``manage.py``."""
    return [f"({e.id}) {e.msg}" for e in check_configuration()]
