"""The front-desk pages that change the worklist.

Each view checks its permission, converts the form, and calls one worklist service (the
same ones behind HL7, MPPS and the API, so events, RIS status messages and the audit
trail never depend on where a change came from). A ``DomainError`` is shown to the
clerk as it is; nothing here saves a model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from frontdesk.access import ADD_ORDERS, CHANGE_PATIENTS, CHANGE_STEPS, StaffPage
from frontdesk.forms import (
    NewPatientForm,
    OrderForm,
    PatientForm,
    RescheduleForm,
    StepFormSet,
    split_name,
)
from worklist import services
from worklist.models import Order, Patient
from worklist.selectors import step_list
from worklist.services import DomainError


def _next(request: HttpRequest) -> str:
    """The page the action was sent from (``next``) if it is one of ours, else the desk."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("frontdesk:desk")


def _back(request: HttpRequest) -> HttpResponse:
    return redirect(_next(request))


def _describe(step: Any) -> str:
    return f"{step.procedure.order.accession_number} / {step.sps_id}"


# The one-click step actions: the service's name in worklist.services, and what the
# clerk reads afterwards.
STEP_ACTIONS: dict[str, tuple[str, str]] = {
    "arrived": ("step_mark_arrived", "marked arrived"),
    "cancel": ("step_cancel", "canceled"),
    "discontinue": ("step_discontinue", "discontinued"),
}


class StepActionView(StaffPage, View):
    """POST: mark a step arrived, cancel or discontinue it."""

    permission_required = CHANGE_STEPS
    http_method_names = ["post"]

    def post(self, request: HttpRequest, step_id: int, action: str) -> HttpResponseBase:
        step = get_object_or_404(step_list(), pk=step_id)
        name, done = STEP_ACTIONS[action]
        service: Callable[..., Any] = getattr(services, name)
        try:
            service(actor=request.user, step_id=step.pk)
        except DomainError as error:
            messages.error(request, f"{_describe(step)}: {error}")
        else:
            messages.success(request, f"{_describe(step)} {done}.")
        return _back(request)


class RescheduleView(StaffPage, View):
    """A step's new date, time and (optionally) station."""

    permission_required = CHANGE_STEPS
    template_name = "frontdesk/reschedule.html"

    def _render(self, request: HttpRequest, step: Any, form: RescheduleForm) -> HttpResponse:
        return render(
            request,
            self.template_name,
            {"step": step, "form": form, "next": _next(request)},
        )

    def get(self, request: HttpRequest, step_id: int) -> HttpResponse:
        step = get_object_or_404(step_list(), pk=step_id)
        start = timezone.localtime(step.start) if step.start else timezone.localtime()
        titles = [t.ae_title for t in step.station_ae_titles.all()]
        form = RescheduleForm(
            initial={
                "date": start.date(),
                "time": start.time().replace(second=0, microsecond=0),
                "station_ae_title": titles[0] if titles else "",
            }
        )
        return self._render(request, step, form)

    def post(self, request: HttpRequest, step_id: int) -> HttpResponse:
        step = get_object_or_404(step_list(), pk=step_id)
        form = RescheduleForm(request.POST)
        if not form.is_valid():
            return self._render(request, step, form)
        try:
            services.step_reschedule(
                actor=request.user,
                step_id=step.pk,
                start=form.start(),
                station_ae_title=form.cleaned_data["station_ae_title"] or None,
            )
        except DomainError as error:
            form.add_error(None, str(error))
            return self._render(request, step, form)
        messages.success(request, f"{_describe(step)} rescheduled.")
        return _back(request)


class PatientCorrectView(StaffPage, View):
    """Correct a patient's name, birth date or sex."""

    permission_required = CHANGE_PATIENTS
    template_name = "frontdesk/patient.html"

    def _render(self, request: HttpRequest, patient: Patient, form: PatientForm) -> HttpResponse:
        return render(
            request,
            self.template_name,
            {"patient": patient, "form": form, "next": _next(request)},
        )

    def get(self, request: HttpRequest, patient_pk: int) -> HttpResponse:
        patient = get_object_or_404(Patient, pk=patient_pk)
        family, given = split_name(patient.name)
        form = PatientForm(
            initial={
                "family_name": family,
                "given_name": given,
                "birth_date": patient.birth_date,
                "sex": patient.sex,
            }
        )
        return self._render(request, patient, form)

    def post(self, request: HttpRequest, patient_pk: int) -> HttpResponse:
        patient = get_object_or_404(Patient, pk=patient_pk)
        form = PatientForm(request.POST)
        if not form.is_valid():
            return self._render(request, patient, form)
        try:
            services.patient_correct(
                actor=request.user, patient_pk=patient.pk, fields=form.patient_fields()
            )
        except DomainError as error:
            form.add_error(None, str(error))
            return self._render(request, patient, form)
        messages.success(request, f"Patient {patient.patient_id} corrected.")
        return _back(request)


class OrderEntryView(StaffPage, View):
    """Manual order entry: a patient, one procedure, one or more steps; the steps are in
    the worklist as soon as it is saved. Empty IDs and UIDs are generated."""

    permission_required = ADD_ORDERS
    template_name = "frontdesk/order_entry.html"

    def _render(self, request: HttpRequest, forms: dict[str, Any]) -> HttpResponse:
        return render(request, self.template_name, forms)

    def get(self, request: HttpRequest) -> HttpResponse:
        now = timezone.localtime()
        return self._render(
            request,
            {
                "patient_form": NewPatientForm(prefix="patient"),
                "order_form": OrderForm(prefix="order"),
                "steps": StepFormSet(
                    prefix="steps",
                    initial=[
                        {"date": now.date(), "time": now.time().replace(second=0, microsecond=0)}
                    ],
                ),
            },
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        patient_form = NewPatientForm(request.POST, prefix="patient")
        order_form = OrderForm(request.POST, prefix="order")
        steps = StepFormSet(request.POST, prefix="steps")
        forms = {"patient_form": patient_form, "order_form": order_form, "steps": steps}
        if not (patient_form.is_valid() and order_form.is_valid() and steps.is_valid()):
            return self._render(request, forms)
        patient = patient_form.cleaned_data
        order = order_form.cleaned_data
        # The service creates *or updates* (MWL-RS semantics): an accession number typed
        # by hand that already belongs to another patient's order would move that order.
        taken = (
            Order.objects.filter(accession_number=order["accession_number"].strip())
            .exclude(
                patient__patient_id=patient["patient_id"].strip(),
                patient__issuer=patient["issuer"].strip(),
            )
            .exists()
            if order["accession_number"].strip()
            else False
        )
        if taken:
            order_form.add_error(
                "accession_number", "This accession number belongs to another patient's order."
            )
            return self._render(request, forms)
        try:
            entered = services.order_enter(
                actor=request.user,
                patient={
                    "patient_id": patient["patient_id"].strip(),
                    "issuer": patient["issuer"].strip(),
                    # Left empty: a known patient keeps what the worklist has.
                    **{k: v for k, v in patient_form.patient_fields().items() if v},
                },
                order={
                    "accession_number": order["accession_number"].strip(),
                    "priority": order["priority"],
                    "referring_physician": order["referring_physician"],
                },
                procedures=[
                    {
                        "description": order["procedure_description"],
                        "code_value": order["procedure_code"],
                        "code_meaning": order["procedure_description"],
                        "study_instance_uid": order["study_instance_uid"].strip(),
                        # Extra step rows left empty have no cleaned data.
                        "steps": [form.step() for form in steps.forms if form.cleaned_data],
                    }
                ],
            )
        except DomainError as error:
            order_form.add_error(None, str(error))
            return self._render(request, forms)
        messages.success(
            request, f"Order {entered.accession_number} entered; it is in the worklist."
        )
        return redirect(f"/desk/?q={entered.accession_number}&all_days=on")
