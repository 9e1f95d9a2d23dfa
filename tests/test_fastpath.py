"""core.fastpath writes and reads exactly the rows the ORM would, column by column.

Its SQL is compiled once and reused, through Django internals (see the module's
docstring): these tests compare its rows with ``Model.save()`` and the ORM's own
querysets, for the first (compiled) and the later (cached) statement of each shape, on
whichever database the suite runs on (CI runs it on SQLite and PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from broker.checks import private_api_problems
from core import fastpath
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from mpps.models import OutboundMessage, PerformedProcedureStep
from mpps.status import OrderStatus
from tests.fixtures_mpps import make_step
from worklist.models import (
    Device,
    Order,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    StationAETitle,
)
from worklist.status import DeviceRole, Priority, SPSStatus

pytestmark = pytest.mark.django_db

# Columns that differ by construction between the two rows compared.
KEYS = {"id"}
CLOCK = {"created_at", "updated_at", "received_at"}


def _row(model: type[models.Model], pk: Any) -> dict[str, Any]:
    return model._default_manager.filter(pk=pk).values().get()


def _same_rows(
    model: type[models.Model],
    make: Callable[[int], models.Model],
    unique: set[str],
    *,
    cached: bool = True,
) -> None:
    """Rows 0 and 1 saved by the ORM, rows 2 and 3 by the fast path (compiled, then
    cached SQL): equal in every column but the keys, the unique columns (told apart by
    ``make``'s argument) and the clock columns (set at save time)."""
    before = timezone.now()
    by_orm = [make(i) for i in (0, 1)]
    for instance in by_orm:
        instance.save(force_insert=True)
    by_fastpath = [make(i) for i in (2, 3)]
    for instance in by_fastpath:
        assert fastpath.insert_row(instance) is True
        assert instance.pk is not None
    # Whether the second row used the cached SQL rather than Django's own path.
    assert any(key[0] is model for key in fastpath._INSERT_SQL) is cached
    after = timezone.now()
    skip = KEYS | unique | CLOCK
    expected = {k: v for k, v in _row(model, by_orm[0].pk).items() if k not in skip}
    for instance in (*by_orm[1:], *by_fastpath):
        row = _row(model, instance.pk)
        assert {k: v for k, v in row.items() if k not in skip} == expected
        for column in CLOCK & set(row):
            assert before <= row[column] <= after, column
        # The instance holds what was written, as after save().
        for field in model._meta.concrete_fields:
            if field.attname not in CLOCK:
                assert getattr(instance, field.attname) == row[field.attname], field.attname


def test_a_patient_row_is_the_one_save_writes() -> None:
    _same_rows(
        Patient,
        lambda i: Patient(
            patient_id=f"FP{i}",
            name="Müller^Jürgen^^Dr.",
            birth_date=dt.date(1970, 1, 31),
            sex="M",
            weight_kg=Decimal("81.50"),
            size_m=Decimal("1.82"),
            pregnancy_status=4,
            other_ids=[{"patient_id": "X1", "issuer": "OTHER"}],
        ),
        {"patient_id"},
    )


def test_an_order_procedure_step_and_station_rows_are_the_ones_save_writes() -> None:
    patient = Patient.objects.create(patient_id="FP-ORDER", name="DOE^JANE")
    _same_rows(
        Order,
        lambda i: Order(
            patient=patient,
            accession_number=f"ACC{i}",
            referring_physician="WHO^DOCTOR",
            priority=Priority.STAT,
            placer_application="RIS|HOSP",
        ),
        {"accession_number"},
    )
    order = Order.objects.first()
    assert order is not None
    _same_rows(
        RequestedProcedure,
        lambda i: RequestedProcedure(
            order=order,
            requested_procedure_id=f"RP{i}",
            study_instance_uid=f"1.2.826.0.1.3680043.8.498.{i + 1}",
            code_value="CTHEAD",
            code_meaning="CT head",
            code_scheme="L",
        ),
        {"requested_procedure_id", "study_instance_uid"},
    )
    procedure = RequestedProcedure.objects.first()
    assert procedure is not None
    start = timezone.make_aware(dt.datetime(2026, 12, 1, 9, 30, 15))
    _same_rows(
        ScheduledProcedureStep,
        lambda i: ScheduledProcedureStep(
            procedure=procedure,
            sps_id=f"SPS{i}",
            modality="CT",
            start=start,
            performing_physician="TECH^ANNA",
            protocol_codes=[{"value": "P1", "scheme": "L", "meaning": "plain"}],
            status=SPSStatus.SCHEDULED,
        ),
        {"sps_id"},
    )
    step = ScheduledProcedureStep.objects.first()
    assert step is not None
    assert step.start_date == dt.date(2026, 12, 1)  # derived by save(), on both paths
    _same_rows(StationAETitle, lambda i: StationAETitle(step=step, ae_title=f"CT{i}"), {"ae_title"})


def test_an_inbound_message_row_is_the_one_save_writes() -> None:
    _same_rows(
        InboundMessage,
        lambda i: InboundMessage(
            raw=b"MSH|^~\\&|RIS|HOSP\r",
            sending_application="RIS",
            sending_facility="HOSP",
            control_id=f"C{i}",
            message_type="ORM^O01",
            version="2.3.1",
            outcome=Outcome.ACCEPTED,
            ack=b"MSA|AA",
            processed_at=timezone.make_aware(dt.datetime(2026, 12, 1, 8, 0)),
        ),
        {"control_id"},
        # A BinaryField has a placeholder of its own (get_placeholder): "%s" on both
        # databases, checked for each value, so the message row's SQL is cached too.
    )


def test_a_performed_step_and_an_outbox_row_are_the_ones_save_writes() -> None:
    """The MPPS N-CREATE's row (a JSON data set) and the RIS outbox's message row."""
    dataset = {"00400252": {"vr": "CS", "Value": ["IN PROGRESS"]}}
    _same_rows(
        PerformedProcedureStep,
        lambda i: PerformedProcedureStep(
            sop_instance_uid=f"1.2.3.{i}",
            calling_ae_title="CT1",
            dataset=dataset,
            modality="CT",
            started_at=timezone.make_aware(dt.datetime(2026, 12, 1, 8, 30)),
        ),
        {"sop_instance_uid"},
    )
    order = make_step().procedure.order
    _same_rows(
        OutboundMessage,
        lambda i: OutboundMessage(
            order=order, sequence=i + 1, order_status=OrderStatus.IN_PROCESS, message_type="ORM^O01"
        ),
        {"sequence"},
    )


def test_select_rows_reads_a_performed_step_as_the_orm_does() -> None:
    """The N-SET's read of the instance by its UID (a JSON data set converted back)."""
    for i in range(3):
        PerformedProcedureStep.objects.create(
            sop_instance_uid=f"1.2.4.{i}", dataset={"00100020": {"vr": "LO", "Value": [f"P{i}"]}}
        )
    for uid in ("1.2.4.1", "1.2.4.2", "1.2.4.9"):  # compiled once, then cached; one unknown

        def queryset(u: str = uid) -> QuerySet[PerformedProcedureStep]:
            return PerformedProcedureStep.objects.filter(sop_instance_uid=u)

        rows = fastpath.select_rows(PerformedProcedureStep, "test-mpps-uid", [uid], queryset)
        assert (PerformedProcedureStep, connection.vendor, "test-mpps-uid") in fastpath._SELECT_SQL
        assert [_fields(r) for r in rows] == [_fields(r) for r in queryset()]
        assert all(isinstance(r.dataset, dict) for r in rows)


def test_a_taken_unique_key_is_refused_without_aborting_the_transaction() -> None:
    Patient.objects.create(patient_id="TAKEN")
    with transaction.atomic():
        for _ in range(2):  # compiled, then cached
            assert fastpath.insert_row(Patient(patient_id="TAKEN"), ignore_conflicts=True) is False
        assert Patient.objects.filter(patient_id="TAKEN").count() == 1  # still usable
    assert fastpath.insert_row(Patient(patient_id="FREE"), ignore_conflicts=True) is True


def _fields(instance: models.Model) -> dict[str, Any]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_select_rows_reads_the_rows_the_queryset_reads() -> None:
    for i, modality in enumerate(["CT", "CT", "MR"]):
        Device.objects.create(
            ae_title=f"DEV{i}", role=DeviceRole.MODALITY, modality=modality, port=104 + i
        )
    for modality in ("CT", "MR", "CT", "US"):  # compiled once, then cached

        def queryset(m: str = modality) -> QuerySet[Device]:
            return Device.objects.filter(
                role=DeviceRole.MODALITY, is_active=True, modality=m
            ).order_by("pk")

        rows = fastpath.select_rows(
            Device, "test-modality", [modality, DeviceRole.MODALITY], queryset
        )
        # The cached SQL is the one in use (not the ORM fallback).
        assert (Device, connection.vendor, "test-modality") in fastpath._SELECT_SQL
        assert [_fields(r) for r in rows] == [_fields(r) for r in queryset()]
        assert all(not r._state.adding for r in rows)  # loaded rows, as from the ORM


def test_select_rows_falls_back_to_the_orm_when_its_parameters_are_not_djangos() -> None:
    Device.objects.create(ae_title="ONLY", modality="CT")
    rows = fastpath.select_rows(
        Device, "test-wrong-order", ["wrong"], lambda: Device.objects.filter(modality="CT")
    )
    assert [r.ae_title for r in rows] == ["ONLY"]


def test_values_rows_reads_the_rows_and_converted_values_the_queryset_reads() -> None:
    patient = Patient.objects.create(patient_id="FP-VALUES", name="DOE^JANE")
    order = Order.objects.create(patient=patient, accession_number="ACC-V")
    procedure = RequestedProcedure.objects.create(
        order=order, requested_procedure_id="RP1", study_instance_uid="1.2.826.0.1.3680043.8.498.9"
    )
    for i, hour in enumerate((9, 8, 10)):
        ScheduledProcedureStep.objects.create(
            procedure=procedure,
            sps_id=f"SPS{i}",
            modality="CT",
            start=timezone.make_aware(dt.datetime(2026, 12, 1, hour, 30)),
            protocol_codes=[{"value": f"P{i}"}],
        )
    fastpath._VALUES_SQL.clear()
    for day in (dt.date(2026, 12, 1), dt.date(2026, 12, 2), dt.date(2026, 12, 1)):

        def queryset(d: dt.date = day) -> QuerySet[Any, Any]:
            return (
                ScheduledProcedureStep.objects.filter(start_date=d)
                .order_by("start_time", "pk")
                .values_list("sps_id", "start_date", "start_time", "protocol_codes")
            )

        rows = fastpath.values_rows("test-day", [fastpath.bind_value(day)], queryset)
        assert (connection.vendor, "test-day") in fastpath._VALUES_SQL
        # Dates, times and JSON converted as the ORM converts them, in its order.
        assert rows == list(queryset())
    assert [r[0] for r in rows] == ["SPS1", "SPS0", "SPS2"]


def test_values_rows_falls_back_to_the_orm_when_its_parameters_are_not_djangos() -> None:
    Device.objects.create(ae_title="ONLY", modality="CT")
    fastpath._VALUES_SQL.clear()
    rows = fastpath.values_rows(
        "test-wrong",
        ["wrong"],
        lambda: Device.objects.filter(modality="CT").values_list("ae_title"),
    )
    assert rows == [("ONLY",)]
    assert not fastpath._VALUES_SQL


def test_the_start_up_check_names_the_module_when_django_is_not_the_release_it_was_written_for() -> (
    None
):
    assert private_api_problems({"Django": "5.2.19", "pynetdicom": "3.0.4"}) == []
    problems = private_api_problems({"Django": "6.0.1", "pynetdicom": "3.1.0"})
    assert [p.id for p in problems] == ["broker.E020", "broker.E020"]
    assert "core/fastpath.py" in problems[0].msg and "6.0.1" in problems[0].msg
    assert "core/dicom/net.py" in problems[1].msg
