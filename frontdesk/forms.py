"""Forms of the staff pages. They only check and convert what was typed; every change
is made by the worklist services the views call."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from django import forms
from django.utils import timezone

from frontdesk.status import WORDS
from worklist.status import Priority, SPSStatus

SEX_CHOICES = [("", "—"), ("F", "Female"), ("M", "Male"), ("O", "Other")]
DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
TIME_INPUT = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")


def person_name(family: str, given: str) -> str:
    """DICOM PN "FAMILY^GIVEN" from the two typed parts (no trailing ``^``)."""
    family, given = family.strip(), given.strip()
    return f"{family}^{given}" if given else family


def split_name(name: str) -> tuple[str, str]:
    parts = name.split("^")
    return parts[0], parts[1] if len(parts) > 1 else ""


def aware(day: date, at: time) -> datetime:
    """``day`` at ``at`` in the site's time zone (TIME_ZONE)."""
    return timezone.make_aware(datetime.combine(day, at))


class DeskFilterForm(forms.Form):
    """The front desk's search and filters (a GET form; every field optional)."""

    q = forms.CharField(
        label="Search",
        required=False,
        widget=forms.TextInput(
            attrs={"placeholder": "Name, patient ID or accession number", "autofocus": True}
        ),
    )
    date = forms.DateField(required=False, widget=DATE_INPUT)
    all_days = forms.BooleanField(label="All days", required=False)
    modality: forms.ChoiceField = forms.ChoiceField(required=False)
    station: forms.ChoiceField = forms.ChoiceField(required=False)
    # The board's words; READY keeps its own name here, to filter on it.
    status = forms.ChoiceField(
        required=False,
        choices=[
            ("", "Any status"),
            *(
                (value, "Ready" if value == SPSStatus.READY else WORDS[value].word)
                for value in SPSStatus.values
            ),
        ],
    )

    def __init__(self, *args: Any, modalities: list[str], stations: list[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        modality = self.fields["modality"]
        station = self.fields["station"]
        assert isinstance(modality, forms.ChoiceField)
        assert isinstance(station, forms.ChoiceField)
        modality.choices = [("", "Any modality"), *((m, m) for m in modalities)]
        station.choices = [("", "Any station"), *((s, s) for s in stations)]


class RescheduleForm(forms.Form):
    date = forms.DateField(widget=DATE_INPUT)
    time = forms.TimeField(widget=TIME_INPUT)
    station_ae_title = forms.CharField(
        label="Station AE title",
        max_length=16,
        required=False,
        help_text="Leave empty to keep the step's station.",
    )

    def start(self) -> datetime:
        return aware(self.cleaned_data["date"], self.cleaned_data["time"])


class PatientForm(forms.Form):
    """Demographics a front-desk clerk may correct (not the identifier)."""

    family_name = forms.CharField(max_length=160)
    given_name = forms.CharField(max_length=160, required=False)
    birth_date = forms.DateField(required=False, widget=DATE_INPUT)
    sex = forms.ChoiceField(choices=SEX_CHOICES, required=False)

    def patient_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": person_name(data["family_name"], data["given_name"]),
            "birth_date": data["birth_date"],
            "sex": data["sex"],
        }


class NewPatientForm(PatientForm):
    patient_id = forms.CharField(label="Patient ID", max_length=64)
    issuer = forms.CharField(label="Issuer of Patient ID", max_length=64, required=False)

    field_order = ["patient_id", "issuer", "family_name", "given_name", "birth_date", "sex"]


class OrderForm(forms.Form):
    accession_number = forms.CharField(
        max_length=16, required=False, help_text="Generated when left empty."
    )
    priority = forms.ChoiceField(
        choices=[("", "—"), *Priority.choices], required=False, initial=Priority.ROUTINE
    )
    referring_physician = forms.CharField(max_length=324, required=False)
    procedure_description = forms.CharField(label="Procedure", max_length=64)
    procedure_code = forms.CharField(label="Procedure code", max_length=64, required=False)
    study_instance_uid = forms.CharField(
        label="Study Instance UID",
        max_length=64,
        required=False,
        help_text="Generated when left empty.",
    )


class StepForm(forms.Form):
    modality = forms.CharField(max_length=16, widget=forms.TextInput(attrs={"size": 4}))
    date = forms.DateField(widget=DATE_INPUT)
    time = forms.TimeField(widget=TIME_INPUT)
    station_ae_title = forms.CharField(label="Station AE title", max_length=16, required=False)
    description = forms.CharField(max_length=64, required=False)
    sps_id = forms.CharField(
        label="Step ID", max_length=16, required=False, help_text="Generated when left empty."
    )

    def clean_modality(self) -> str:
        return str(self.cleaned_data["modality"]).strip().upper()

    def clean_station_ae_title(self) -> str:
        return str(self.cleaned_data["station_ae_title"]).strip()

    def step(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "sps_id": data["sps_id"],
            "modality": data["modality"],
            "start": aware(data["date"], data["time"]),
            "station_ae_title": data["station_ae_title"],
            "description": data["description"],
        }


StepFormSet = forms.formset_factory(StepForm, extra=2, min_num=1, validate_min=True)
