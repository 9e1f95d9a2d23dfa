"""Configuration from environment variables.

Each reader returns a usable value and records a problem instead of raising, so that
every bad variable is reported at once, as a system check with an id
(``broker.E001``...), in one line that names the variable. ``manage.py`` refuses to
start when any problem was recorded.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import environ

TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"0", "false", "no", "off", ""}
# PS3.5 6.2: AE titles are at most 16 characters, no backslash or control characters.
AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


@dataclass
class ConfigProblem:
    check_id: str
    variable: str
    message: str

    def line(self) -> str:
        return f"({self.check_id}) {self.variable}: {self.message}"


@dataclass
class Config:
    """Reads variables from ``environ`` and keeps a list of problems."""

    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    problems: list[ConfigProblem] = field(default_factory=list)
    # Every variable read, with its default: what a site gets without setting it (the
    # conformance statement documents these, whatever this machine's environment says).
    defaults: dict[str, Any] = field(default_factory=dict)

    def _problem(self, check_id: str, variable: str, message: str) -> None:
        self.problems.append(ConfigProblem(check_id, variable, message))

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        return value.strip() if value is not None else None

    def _default(self, name: str, default: Any) -> None:
        self.defaults.setdefault(name, default)

    def string(self, name: str, default: str) -> str:
        self._default(name, default)
        value = self.raw(name)
        return default if value is None or value == "" else value

    def boolean(self, name: str, default: bool) -> bool:
        self._default(name, default)
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in TRUE_VALUES:
            return True
        if value.lower() in FALSE_VALUES:
            return False
        self._problem("broker.E001", name, f"must be true or false, got {value!r}")
        return default

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        self._default(name, default)
        value = self.raw(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            self._problem("broker.E002", name, f"must be a whole number, got {value!r}")
            return default
        if number < minimum or (maximum is not None and number > maximum):
            upper = "" if maximum is None else f" and {maximum}"
            self._problem("broker.E002", name, f"must be between {minimum}{upper}, got {number}")
            return default
        return number

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        self._default(name, default)
        value = self.raw(name)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except ValueError:
            self._problem("broker.E002", name, f"must be a number, got {value!r}")
            return default
        if number < minimum:
            self._problem("broker.E002", name, f"must be at least {minimum}, got {number}")
            return default
        return number

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, minimum=1, maximum=65535)

    def ae_title(self, name: str, default: str) -> str:
        value = self.string(name, default)
        if not AE_TITLE_RE.match(value) or not value.strip():
            self._problem(
                "broker.E003",
                name,
                f"must be 1 to 16 printable ASCII characters without a backslash, got {value!r}",
            )
            return default
        return value

    def ae_titles(self, name: str) -> list[str]:
        titles = [t.strip() for t in self.string(name, "").split(",") if t.strip()]
        for title in titles:
            if not AE_TITLE_RE.match(title):
                self._problem("broker.E003", name, f"{title!r} is not a valid AE title")
        return titles

    def bind_address(self, name: str, default: str) -> str:
        value = self.string(name, default)
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if value != "localhost":
                self._problem("broker.E004", name, f"must be an IP address, got {value!r}")
                return default
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in choices:
            self._problem(
                "broker.E007", name, f"must be one of {', '.join(choices)}, got {value!r}"
            )
            return default
        return value

    def list(self, name: str, default: list[str]) -> list[str]:
        self._default(name, default)
        value = self.raw(name)
        if value is None:
            return default
        return [item.strip() for item in value.split(",") if item.strip()]

    def networks(self, name: str, default: Any) -> Any:
        """Comma-separated IP addresses or networks (``10.0.0.0/8``)."""
        values = self.list(name, default)
        networks: Any = []
        for value in values:
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                self._problem("broker.E004", name, f"{value!r} is not an IP address or network")
        return networks

    def existing_file(self, name: str) -> str:
        value = self.string(name, "")
        if value and not Path(value).is_file():
            self._problem("broker.E008", name, f"file {value!r} does not exist")
        return value

    def database(self, name: str, default: str) -> dict[str, Any]:
        url = self.string(name, default)
        try:
            config: dict[str, Any] = environ.Env.db_url_config(url)
        except Exception as exc:  # django-environ raises several types for bad URLs
            self._problem("broker.E005", name, f"cannot be parsed ({exc}), got {_redact(url)!r}")
            return environ.Env.db_url_config(default)
        engine = config.get("ENGINE", "")
        if engine not in {"django.db.backends.sqlite3", "django.db.backends.postgresql"}:
            self._problem(
                "broker.E005",
                name,
                f"unsupported database scheme in {_redact(url)!r}; use sqlite:/// or postgres://",
            )
            return environ.Env.db_url_config(default)
        return config

    def broker_url(self, name: str, default: str) -> str:
        url = self.string(name, default)
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in {"filesystem", "redis", "rediss", "amqp", "memory"}:
            self._problem(
                "broker.E006",
                name,
                f"unsupported broker scheme in {_redact(url)!r}; use filesystem://, redis:// or amqp://",
            )
            return default
        return url


def _redact(url: str) -> str:
    """Hide a password in a URL before it is printed."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)
