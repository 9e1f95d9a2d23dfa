"""``/api/v1/mwlitems/``: the worklist over REST, compatible with dcm4chee's MWL-RS.

Items are DICOM JSON (PS3.18 Annex F). A search takes attribute keywords (or tags,
``00100020``) and dotted sequence paths as query parameters, with C-FIND's wildcards,
ranges and lists of values (``\\``). The parameters become a C-FIND identifier, matched
by the C-FIND SCP's own module (``worklist.matching``) and answered by its own builder
(``worklist.responses``), so a query gives the same items over REST and over DICOM:
including that, without a ScheduledProcedureStepStatus, only SCHEDULED / ARRIVED / READY
steps are offered. Every worklist attribute is returned (an identifier that asks for all
of them, universally).

    GET    mwlitems/?PatientID=...&ScheduledProcedureStepSequence.Modality=CT
    GET    mwlitems/count/                                  -> {"count": n}
    POST   mwlitems/                     a DICOM JSON item: create or update (order_enter)
    POST   mwlitems/{study_uid}/{sps_id}/status/{STATUS}/   (step_change_status)
    DELETE mwlitems/{study_uid}/{sps_id}/                   (step_remove)
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import re_path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from rest_framework import permissions, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from worklist import importer, services
from worklist.attributes import SPS_SEQUENCE, TOP_ATTRIBUTES
from worklist.matching import MatchOptions, QueryError, match
from worklist.models import ScheduledProcedureStep
from worklist.responses import ResponseBuilder, return_keys
from worklist.status import SPSStatus

# Query parameters of MWL-RS / QIDO-RS that are not attributes.
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching", "orderby", "format"}


class DicomJSONParser(JSONParser):
    media_type = "application/dicom+json"


class DicomJSONRenderer(JSONRenderer):
    media_type = "application/dicom+json"


def _tag(name: str) -> int:
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        return int(name, 16)
    tag = tag_for_keyword(name)
    if tag is None:
        raise ValidationError({name: f"{name!r} is not a DICOM attribute keyword or tag"})
    return int(tag)


def _full_identifier() -> Dataset:
    """Every worklist attribute as a universal return key (sequences: every child)."""
    ds = Dataset()
    for attr in TOP_ATTRIBUTES:
        ds.add(DataElement(attr.tag, attr.vr, [] if attr.is_sequence else None))
    sps = Dataset()
    for child in SPS_SEQUENCE.children:
        sps.add(DataElement(child.tag, child.vr, [] if child.is_sequence else None))
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def identifier_from_query(params: Any) -> Dataset:
    """A C-FIND identifier from query parameters: all return keys, plus the given values
    as matching keys (``Seq.Keyword`` for an attribute of a sequence's item)."""
    ds = _full_identifier()
    for name in params:
        if name in _CONTROL:
            continue
        values = [v for v in params.getlist(name) if v != ""]
        if not values:
            continue
        if len(values) > 1:
            raise ValidationError({name: "give one value (several values: separate with \\)"})
        target = ds
        parts = name.split(".")
        for part in parts[:-1]:
            tag = _tag(part)
            if dictionary_VR(tag) != "SQ":
                raise ValidationError({name: f"{part} is not a sequence"})
            if tag not in target or not target[tag].value:
                target.add(DataElement(tag, "SQ", [Dataset()]))
            target = target[tag].value[0]
        tag = _tag(parts[-1])
        vr = dictionary_VR(tag)
        if vr == "SQ":
            raise ValidationError({name: "a sequence is matched by its items' attributes"})
        text = values[0]
        value: Any = text.split("\\") if "\\" in text else text
        target.add(DataElement(tag, vr, value))
    return ds


def _options() -> MatchOptions:
    return MatchOptions(pn_case_insensitive=settings.MWL_PN_CASE_INSENSITIVE)


def _int_param(request: Request, name: str, default: int, maximum: int | None = None) -> int:
    text = request.query_params.get(name)
    if not text:
        return default
    try:
        number = int(text)
    except ValueError:
        raise ValidationError({name: "not a number"}) from None
    if number < 0:
        raise ValidationError({name: "must not be negative"})
    return min(number, maximum) if maximum is not None else number


def _items(identifier: Dataset, queryset: Any, *, offset: int, limit: int) -> list[dict[str, Any]]:
    builder = ResponseBuilder(return_keys(identifier))
    rows, stations = builder.rows(queryset, offset + limit)
    return [builder.dataset(row, stations).to_json_dict() for row in rows[offset:]]


class _Permission(permissions.BasePermission):
    """Reads need ``view`` of steps, creating needs ``add`` of orders, status changes and
    removal ``change`` of steps."""

    by_method = {
        "GET": ("worklist.view_scheduledprocedurestep",),
        "HEAD": ("worklist.view_scheduledprocedurestep",),
        "OPTIONS": ("worklist.view_scheduledprocedurestep",),
        "POST": ("worklist.add_order", "worklist.add_scheduledprocedurestep"),
        "DELETE": ("worklist.change_scheduledprocedurestep",),
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        perms = getattr(view, "required", None) or self.by_method.get(request.method or "")
        # No entry: a method no view here has; the view answers 405.
        return perms is None or user.has_perms(perms)


class _MwlView(APIView):
    permission_classes = [_Permission]
    parser_classes = [JSONParser, DicomJSONParser]
    renderer_classes = [JSONRenderer, DicomJSONRenderer]

    def _query(self, request: Request) -> tuple[Dataset, Any]:
        identifier = identifier_from_query(request.query_params)
        try:
            matching = match(identifier, _options())
            return_keys(identifier)  # refuses what the answers could not be built for
        except QueryError as exc:
            raise ValidationError({"detail": exc.comment}) from exc
        return identifier, matching.queryset


_SEARCH_PARAMETERS = [
    OpenApiParameter(
        "PatientID",
        str,
        description=(
            "Any worklist attribute keyword (or tag) as a parameter, sequence attributes "
            "as dotted paths (ScheduledProcedureStepSequence.Modality=CT); wildcards * ?, "
            "DA/TM ranges (20261130-20261201), several values separated by \\."
        ),
    ),
    OpenApiParameter("limit", int),
    OpenApiParameter("offset", int),
]


class MwlItemsView(_MwlView):
    @extend_schema(parameters=_SEARCH_PARAMETERS, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        """Search the worklist: a JSON array of DICOM JSON items."""
        identifier, queryset = self._query(request)
        limit = _int_param(
            request, "limit", settings.API_MAX_PAGE_SIZE, maximum=settings.API_MAX_PAGE_SIZE
        )
        offset = _int_param(request, "offset", 0)
        return Response(_items(identifier, queryset, offset=offset, limit=limit))

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        """Create or update one item (DICOM JSON); missing identifiers are generated."""
        if not isinstance(request.data, dict):
            raise ParseError("the body is one DICOM JSON item (an object)")
        try:
            dataset = Dataset.from_json(json.dumps(request.data))
        except Exception as exc:
            # pydicom raises what its parsing meets (KeyError, AttributeError, ...): any
            # of them means the client sent something that is not DICOM JSON.
            raise ValidationError({"detail": "not DICOM JSON (PS3.18 Annex F)"}) from exc
        try:
            maps = importer.order_maps(dataset)
        except (ValueError, importer.WorklistFileError) as exc:
            raise ValidationError({"detail": f"not a worklist item: {exc}"}) from exc
        if not maps["procedures"][0]["steps"]:
            raise ValidationError({"detail": "no Scheduled Procedure Step Sequence item"})
        try:
            order = services.order_enter(actor=request.user, **maps)
        except services.DomainError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        entered = maps["procedures"][0]
        procedures = order.procedures.order_by("-pk")
        if entered["study_instance_uid"]:
            procedures = procedures.filter(study_instance_uid=entered["study_instance_uid"])
        elif entered["requested_procedure_id"]:
            procedures = procedures.filter(requested_procedure_id=entered["requested_procedure_id"])
        steps = ScheduledProcedureStep.objects.filter(procedure=procedures[0])
        sps_ids = [s["sps_id"] for s in entered["steps"] if s["sps_id"]]
        if len(sps_ids) == len(entered["steps"]):
            steps = steps.filter(sps_id__in=sps_ids)
        # The stored item(s), built as a search would return them.
        items = _items(_full_identifier(), steps, offset=0, limit=steps.count())
        return Response(items[0] if len(items) == 1 else items, status=status.HTTP_200_OK)


class MwlCountView(_MwlView):
    @extend_schema(parameters=_SEARCH_PARAMETERS[:1], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        """How many items a search matches: ``{"count": n}``."""
        _, queryset = self._query(request)
        return Response({"count": queryset.count()})


def _step(study_instance_uid: str, sps_id: str) -> ScheduledProcedureStep:
    return get_object_or_404(
        ScheduledProcedureStep,
        procedure__study_instance_uid=study_instance_uid,
        sps_id=sps_id,
    )


class MwlStatusView(_MwlView):
    required = ("worklist.change_scheduledprocedurestep",)

    @extend_schema(request=None, responses={204: None})
    def post(
        self, request: Request, study_instance_uid: str, sps_id: str, new_status: str
    ) -> Response:
        """Change the step's status (SCHEDULED, ARRIVED, READY, STARTED, COMPLETED,
        DISCONTINUED, CANCELED)."""
        if new_status not in SPSStatus.values:
            raise ValidationError({"status": f"{new_status!r} is not a step status"})
        step = _step(study_instance_uid, sps_id)
        try:
            services.step_change_status(actor=request.user, step_id=step.pk, new_status=new_status)
        except services.DomainError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class MwlItemView(_MwlView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, study_instance_uid: str, sps_id: str) -> Response:
        """Take the item out of the worklist (the step is kept, CANCELED)."""
        step = _step(study_instance_uid, sps_id)
        services.step_remove(actor=request.user, step_id=step.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


# dcm4chee's clients call these paths without a trailing slash; either form is served
# (a redirect would lose a POST's body).
urlpatterns = [
    re_path(r"^mwlitems/?$", MwlItemsView.as_view(), name="mwlitems"),
    re_path(r"^mwlitems/count/?$", MwlCountView.as_view(), name="mwlitems-count"),
    re_path(
        r"^mwlitems/(?P<study_instance_uid>[^/]+)/(?P<sps_id>[^/]+)/status/(?P<new_status>[^/]+)/?$",
        MwlStatusView.as_view(),
        name="mwlitem-status",
    ),
    re_path(
        r"^mwlitems/(?P<study_instance_uid>[^/]+)/(?P<sps_id>[^/]+)/?$",
        MwlItemView.as_view(),
        name="mwlitem",
    ),
]
