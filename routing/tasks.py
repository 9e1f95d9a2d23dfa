"""Celery tasks of routing. Each takes an id; the database says what is to be done, so
a task run twice, late or never (the periodic ``routing.tick`` catches up) is harmless."""

from __future__ import annotations

from celery import shared_task

from routing import jobs, services


@shared_task(name=services.SEND_TASK, acks_late=True, ignore_result=True)
def job_send(job_id: int) -> str:
    """Send one job (if it is due and no other worker holds it)."""
    return jobs.job_run(job_id).status


@shared_task(name=services.MPPS_TASK, acks_late=True, ignore_result=True)
def mpps_ended(mpps_id: int) -> None:
    """A final MPPS: wait for its instances (routes at once if they are all there)."""
    services.mpps_ended(mpps_id)


@shared_task(name="routing.tick", ignore_result=True)
def tick() -> dict[str, int]:
    """Periodic (Celery beat): completeness, quiet periods, due retries, expired leases,
    spool clean-up."""
    return services.tick()
