"""gunicorn's access log for `serve`: no query strings, no paths of pages not found.

The format (``HTTP_ACCESS_LOG_FORMAT``) has the method, the path, the status, the size
and the time, never the query string (admin searches carry patient names) nor the
referer. The path of a 404 is withheld too: it is whatever the client typed, and this
broker's own URLs carry only numeric ids.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger


class AccessLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in ("r", "q", "f"):
            atoms[name] = "-"
        if str(atoms.get("s")) == "404":
            atoms["U"] = "(path withheld)"
        return atoms
