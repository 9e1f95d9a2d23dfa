from __future__ import annotations

from django.db import connection
from django.db.models import Max
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from broker.models import WorkerHeartbeat


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and `serve`'s checks.

    Carries no patient data, so it needs no login. ``worker_last_seen`` is the last
    time a Celery worker ran the heartbeat task (``manage.py heartbeat`` queues one).
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        last = WorkerHeartbeat.objects.aggregate(last=Max("seen_at"))["last"]
    except Exception:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse(
        {
            "status": "ok",
            "database": "ok",
            "worker_last_seen": last.isoformat() if last else None,
        }
    )
