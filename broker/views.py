from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from broker import health as checks
from broker import metrics as prometheus


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Database, listeners, worker heartbeat and backlogs, for monitoring and `serve`.

    Carries no patient data, so it needs no login. 503 when something is down
    (see ``broker.health.report``).
    """
    report = checks.report()
    return JsonResponse(report.body, status=200 if report.healthy else 503)


def metrics_allowed(request: HttpRequest) -> bool:
    """/metrics has no patient data, but it tells the workload: loopback (or
    METRICS_ALLOWED_IPS) only, or a bearer METRICS_TOKEN."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return True
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    networks = cast(Iterable[Any], settings.METRICS_ALLOWED_NETWORKS)
    return any(client in network for network in networks)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(prometheus.render(), content_type=prometheus.CONTENT_TYPE)
