"""MWL-RS (/api/v1/mwlitems/) against C-FIND for the same query (prints figures; not a test).

Both run in this process on one database: the REST search through Django's whole request
stack (token authentication, permissions, matching, DICOM JSON) with Django's test
client, no socket; C-FIND over a real association to the broker's DICOM listener,
started in-process, with an identifier asking for every worklist attribute (what the
REST search returns). Alternating, ``--runs`` times each, for a typical scanner query
(today, CT, station CT1: 20 items) and a broad one (500 items); medians and p95.

    .venv/bin/python bench/mwlrs.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_bench_mwlrs .venv/bin/python bench/mwlrs.py

Without DATABASE_URL it uses a fresh SQLite file, var/bench_mwlrs.sqlite3; a PostgreSQL
database must be a bench one (its name contains "bench"): its worklist is emptied first.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import free_port  # noqa: E402

if not os.environ.get("DATABASE_URL"):
    _path = ROOT / "var" / "bench_mwlrs.sqlite3"
    for _suffix in ("", "-wal", "-shm"):
        Path(f"{_path}{_suffix}").unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{_path}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["ALLOWED_HOSTS"] = "testserver"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from pydicom import Dataset  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from broker.dicom import server  # noqa: E402
from tests.fixtures_dicom import bulk_schedule  # noqa: E402
from tests.scu import keep_responses  # noqa: E402
from worklist.models import (  # noqa: E402
    Order,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    StationAETitle,
)
from worklist.mwlrs import identifier_from_query  # noqa: E402


class _Params(dict[str, str]):
    def getlist(self, key: str) -> list[str]:
        return [self[key]]


def prepare(typical: int, broad: int) -> None:
    name = str(settings.DATABASES["default"]["NAME"])
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and "bench" not in name:
        raise SystemExit(f"refusing to empty {name}: use a database whose name has 'bench'")
    call_command("migrate", verbosity=0)
    Order.objects.all().delete()
    Patient.objects.all().delete()
    now = timezone.localtime().replace(hour=9, minute=0, second=0, microsecond=0)
    bulk_schedule(typical, start=now, station="CT1")
    # The broad query's other items on another station: the typical query keeps 20.
    _bulk_more(broad - typical, now)


def _bulk_more(count: int, start: datetime) -> None:
    local = timezone.localtime(start)
    patients = Patient.objects.bulk_create(
        [
            Patient(patient_id=f"MORE{n}", name=f"MORE^{n}", name_key=f"MORE^{n}")
            for n in range(count)
        ]
    )
    orders = Order.objects.bulk_create(
        [Order(patient=p, accession_number=f"M{n}") for n, p in enumerate(patients)]
    )
    procedures = RequestedProcedure.objects.bulk_create(
        [
            RequestedProcedure(
                order=o, requested_procedure_id="RP1", study_instance_uid=f"1.2.3.888.{n}"
            )
            for n, o in enumerate(orders)
        ]
    )
    steps = ScheduledProcedureStep.objects.bulk_create(
        [
            ScheduledProcedureStep(
                procedure=rp,
                sps_id="S1",
                modality="CT",
                start=start,
                start_date=local.date(),
                start_time=local.time().replace(tzinfo=None),
            )
            for rp in procedures
        ]
    )
    StationAETitle.objects.bulk_create([StationAETitle(step=s, ae_title="CT2") for s in steps])


def rest_client() -> Client:
    user, _ = User.objects.get_or_create(username="bench-integrator")
    user.groups.add(Group.objects.get(name="Integrator"))
    token, _ = Token.objects.get_or_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


def rest_once(client: Client, params: dict[str, str], expected: int) -> float:
    started = time.perf_counter()
    response = client.get("/api/v1/mwlitems/", params)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.content[:500]
    assert len(response.json()) == expected, len(response.json())
    return elapsed


def cfind_once(assoc: object, identifier: Dataset, expected: int) -> float:
    started = time.perf_counter()
    answers = 0
    for status, _ in assoc.send_c_find(identifier, ModalityWorklistInformationFind):  # type: ignore[attr-defined]
        if status is not None and int(status.Status) in (0xFF00, 0xFF01):
            answers += 1
    elapsed = time.perf_counter() - started
    assert answers == expected, answers
    return elapsed


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return f"median {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    typical, broad = 20, 500
    prepare(typical, broad)
    today = timezone.localdate().strftime("%Y%m%d")
    sps = "ScheduledProcedureStepSequence"
    queries = {
        f"typical ({typical} items)": (
            {
                f"{sps}.ScheduledProcedureStepStartDate": today,
                f"{sps}.Modality": "CT",
                f"{sps}.ScheduledStationAETitle": "CT1",
            },
            typical,
        ),
        f"broad ({broad} items)": ({f"{sps}.ScheduledProcedureStepStartDate": today}, broad),
    }
    port = free_port()
    running = server.start("127.0.0.1", port, block=False)
    assert running is not None
    client = rest_client()
    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title=settings.BROKER_AE_TITLE))
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"MWL-RS vs C-FIND, database {engine}, {args.runs} runs each, alternating")
    try:
        for name, (params, expected) in queries.items():
            identifier = identifier_from_query(_Params(params))
            rest_once(client, params, expected)  # warm-up
            cfind_once(assoc, identifier, expected)
            rest: list[float] = []
            cfind: list[float] = []
            for _ in range(args.runs):
                rest.append(rest_once(client, params, expected))
                cfind.append(cfind_once(assoc, identifier, expected))
            ratio = statistics.median(rest) / statistics.median(cfind)
            print(f"{name:22} REST    {summary(rest)}")
            print(f"{'':22} C-FIND  {summary(cfind)}   REST/C-FIND {ratio:.2f}")
    finally:
        assoc.release()
        running.shutdown()


if __name__ == "__main__":
    main()
