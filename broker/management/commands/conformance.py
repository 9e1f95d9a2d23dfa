"""``manage.py conformance``: write the code-derived tables of docs/conformance/*.md.

The DICOM Conformance Statement, the HL7 interface specification and the IHE integration
statement are hand-written prose around generated sections::

    <!-- BEGIN GENERATED: sop-classes -->
    ...
    <!-- END GENERATED: sop-classes -->

Each section is built from the table the code itself runs on: the SOP classes and
transfer syntaxes of the listener's AE as built (``broker.dicom.server.build_ae``), the
worklist attribute table, each DIMSE service's ``STATUSES``, the HL7 mapping rows, the
character set tables, the settings' defaults. ``--check`` changes nothing and fails,
naming the sections, when a document differs from what the code says (CI runs it
through tests/test_conformance_command.py).

Settings are documented with their defaults (``settings.CONFIG_DEFAULTS``), never with
this machine's environment, so that the documents are the same everywhere.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pydicom.charset
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test import override_settings
from pydicom.datadict import dictionary_description
from pydicom.uid import UID
from pynetdicom import AE, evt

from broker.dicom import guard, server
from core import mllp
from core.dicom import status
from hl7v2 import charsets, errors, mapping, msh
from mpps import ris, validation
from worklist import attributes, responses
from worklist.attributes import Attr, Match, Source
from worklist.status import OFFERED_BY_DEFAULT

DOCS_DIR = Path(settings.BASE_DIR) / "docs" / "conformance"
README = Path(settings.BASE_DIR) / "README.md"
SECTION = re.compile(
    r"(<!-- BEGIN GENERATED: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)",
    re.S,
)
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"

# How each kind of worklist key is matched (worklist.matching); every Match member needs one.
MATCHING: dict[Match, str] = {
    Match.TEXT: "single value, wildcard (`*` `?`), list of values (`\\`), universal",
    Match.PERSON_NAME: "single value, wildcard, list of values, universal; case-sensitive "
    "unless MWL_PN_CASE_INSENSITIVE",
    Match.UID: "single value, list of UID, universal (no wildcards)",
    Match.DATE: "single value, range (open at either end), universal",
    Match.SPS_DATE: "single value, range (open at either end), universal; with SPS Start "
    "Time one date-time range",
    Match.SPS_TIME: "single value, range (open at either end), universal; with SPS Start "
    "Date one date-time range",
    Match.STATION_AE: "single value, wildcard, list of values, universal; any of the step's "
    "station AE titles; with MWL_CALLING_AE_AS_STATION, absent or empty means the calling "
    "AE title",
    Match.STATUS: "single value, wildcard, list of values; absent or empty: "
    + ", ".join(str(s) for s in OFFERED_BY_DEFAULT)
    + "; `*`: every status",
    Match.NONE: "none: return key only (a value other than universal is ignored, 0xFF01)",
}
# What an answer holds for a requested key (worklist.responses); every Source member needs one.
RETURNED: dict[Source, str] = {
    Source.COLUMN: "the stored value; zero-length when none",
    Source.JSON_ITEMS: "one item per stored entry; no item when none",
    Source.CODE_ITEM: "one item when a code is stored; else no item",
    Source.STATIONS: "every station AE title of the step (multi-valued)",
    Source.EMPTY: "always zero-length / no item (not stored)",
    Source.SPS_ITEM: "one item: the step (its requested keys; all of them if the item is empty)",
}

# Settings in the statement's configuration table: names, or prefixes of names.
DICOM_SETTINGS = (
    "BROKER_BIND",
    "BROKER_DICOM_PORT",
    "BROKER_AE_TITLE",
    "BROKER_UID_ROOT",
    "DICOM_",
    "MWL_",
    "ROUTING_",
    "TIME_ZONE",
    "LOG_LEVEL",
)
HL7_SETTINGS = (
    "BROKER_BIND",
    "BROKER_HL7_PORT",
    "HL7_",
    "RIS_HL7_",
    "TIME_ZONE",
    "BROKER_UID_ROOT",
)


# --- helpers -------------------------------------------------------------------------------


def cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def hex4(code: int) -> str:
    return f"0x{code:04X}"


def tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def uid_name(uid: str) -> str:
    return UID(uid).name


def defaults() -> dict[str, Any]:
    found: dict[str, Any] = settings.CONFIG_DEFAULTS
    return found


def default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list):
        value = ",".join(value)
    return f"`{value}`" if value != "" else "empty"


def readme_meanings() -> dict[str, str]:
    """Variable -> its meaning in the README's configuration table (one source)."""
    meanings: dict[str, str] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            meanings[name] = cells[-1]
    return meanings


def settings_table(prefixes: Sequence[str]) -> str:
    """Variable, default and the README's meaning of each setting named by ``prefixes``."""
    meanings = readme_meanings()
    rows = [
        (f"`{name}`", default_text(value), meanings.get(name, "(not in the README)"))
        for name, value in defaults().items()
        if name.startswith(tuple(prefixes))
    ]
    return table(("Variable", "Default", "Meaning"), rows)


def _at_defaults() -> Any:
    names = [n for n in defaults() if n.startswith(("BROKER_AE_TITLE", "DICOM_", "MWL_"))]
    return override_settings(**{name: defaults()[name] for name in names})


def default_ae() -> AE:
    """The listener's AE as ``start`` builds it, with every setting at its default."""
    with _at_defaults():
        return server.build_ae()


def default_limits() -> guard.Limits:
    """The listener's connection limits (``broker.dicom.guard``), settings at their defaults."""
    with _at_defaults():
        return server.limits()


def bound_events() -> set[Any]:
    return {event for event, _handler in server.handlers()}


def statuses() -> list[status.Returned]:
    """Every service's declared statuses (a module without a table declares none, and
    tests/test_conformance_statuses.py fails)."""
    found: list[status.Returned] = list(server.STATUSES)
    for module in server.service_modules():
        found += getattr(module, "STATUSES", ())
    return found


# The section of the statement that lists the statuses of each DIMSE operation.
STATUS_SECTIONS: dict[str, str] = {
    "C-ECHO": "echo-statuses",
    "C-FIND": "mwl-statuses",
    "N-CREATE": "mpps-statuses",
    "N-SET": "mpps-statuses",
    "C-STORE": "store-statuses",
    "N-EVENT-REPORT": "commitment-statuses",
    "N-ACTION": "commitment-statuses",
}


# --- DICOM conformance statement ----------------------------------------------------------


def _contexts() -> list[Any]:
    return sorted(default_ae().supported_contexts, key=lambda cx: cx.abstract_syntax)


def scu_sop_classes() -> set[str]:
    """SOP classes the broker uses as SCU: each service module may declare them
    (``SCU_SOP_CLASSES``, e.g. a storage SCU that forwards what the SCP received)."""
    found: set[str] = set()
    for module in server.service_modules():
        found |= {str(uid) for uid in getattr(module, "SCU_SOP_CLASSES", ())}
    return found


def _roles(cx: Any) -> tuple[str, str]:
    """(SCU, SCP) for a supported context. pynetdicom's roles of an acceptor's context are
    those it grants the requestor: ``scp_role`` (the peer may be SCP) makes the broker an
    SCU, ``scu_role=False`` (the peer may not be SCU) means it is never the SCP."""
    scu = "Yes" if cx.scp_role or str(cx.abstract_syntax) in scu_sop_classes() else "No"
    scp = "No" if cx.scu_role is False else "Yes"
    return scu, scp


def listener_role(cx: Any) -> str:
    """The role the listener takes on an association it accepts with this context."""
    if cx.scp_role and _roles(cx)[1] == "No":
        return "SCU"
    return "SCU/SCP" if cx.scp_role else "SCP"


def network_services() -> str:
    """Every SOP class the listener provides, and those the broker only uses (SCU)."""
    roles: dict[str, tuple[str, str]] = {str(cx.abstract_syntax): _roles(cx) for cx in _contexts()}
    for uid in scu_sop_classes() - set(roles):
        roles[uid] = ("Yes", "No")
    rows = [(uid_name(uid), f"`{uid}`", *roles[uid]) for uid in sorted(roles)]
    return table(("SOP class", "UID", "User of service (SCU)", "Provider of service (SCP)"), rows)


def presentation_contexts() -> str:
    """One row per abstract syntax; its transfer syntaxes as a named list (many SOP
    classes share one), each list once in a second table."""
    lists: dict[tuple[str, ...], str] = {}
    rows = []
    for cx in _contexts():
        syntaxes = tuple(str(ts) for ts in cx.transfer_syntax)
        name = lists.setdefault(syntaxes, f"TS-{len(lists) + 1}")
        role = listener_role(cx)
        rows.append((uid_name(cx.abstract_syntax), f"`{cx.abstract_syntax}`", name, role, "None"))
    contexts = table(
        ("Abstract syntax", "SOP class UID", "Transfer syntaxes", "Role", "Extended negotiation"),
        rows,
    )
    syntax_rows = [
        (name, "<br>".join(f"{uid_name(ts)} `{ts}`" for ts in syntaxes))
        for syntaxes, name in lists.items()
    ]
    return (
        contexts
        + "\n"
        + table(("List", "Transfer syntaxes (in the order the AE prefers them)"), syntax_rows)
    )


def association_policies() -> str:
    ae = default_ae()
    limits = default_limits()
    events = bound_events()
    pdu = limits.max_pdu
    rows = [
        ("Application context name", f"`{APPLICATION_CONTEXT}`", ""),
        ("Called AE title", f"`{ae.ae_title}`; any other is rejected", "`BROKER_AE_TITLE`"),
        (
            "Calling AE titles",
            "any" if not defaults()["DICOM_RESTRICT_CALLING_AE"] else "registered devices only",
            "`DICOM_RESTRICT_CALLING_AE`",
        ),
        (
            "Maximum PDU size received (P-DATA-TF)",
            f"{pdu} bytes; a longer PDU: A-ABORT"
            if pdu
            else f"none announced; longer than {guard.UNLIMITED_PDU_CAP} bytes: A-ABORT",
            "`DICOM_MAX_PDU` (0: none announced)",
        ),
        (
            "Largest other PDU received (A-ASSOCIATE-RQ...)",
            f"{guard.OTHER_PDU_LIMIT} bytes; longer: A-ABORT",
            "",
        ),
        (
            "Largest DIMSE message received (command and data set held in memory)",
            f"{limits.max_message} bytes; larger: A-ABORT",
            "`DICOM_MAX_MESSAGE_BYTES`",
        ),
        (
            "Requests waiting on one association",
            f"{guard.MAX_QUEUED_MESSAGES}; more: A-ABORT",
            "",
        ),
        ("Maximum PDU size sent", "the peer's maximum PDU size", ""),
        (
            "Maximum number of simultaneous associations",
            limits.max_associations,
            "`DICOM_MAX_ASSOCIATIONS`",
        ),
        (
            "Maximum connections from one address",
            f"{limits.per_host}; more are closed at accept",
            "`DICOM_MAX_ASSOCIATIONS_PER_HOST`",
        ),
        (
            "Connections waiting for their A-ASSOCIATE-RQ",
            f"{limits.max_pending}; then the oldest of the address holding most is closed",
            "`DICOM_MAX_ASSOCIATIONS`",
        ),
        (
            "Asynchronous operations window",
            "negotiated as (1, 1)"
            if evt.EVT_ASYNC_OPS in events
            else "not supported: no reply to the proposal; one operation at a time",
            "",
        ),
        (
            "SOP class extended negotiation",
            "supported" if evt.EVT_SOP_EXTENDED in events else "not supported (ignored)",
            "",
        ),
        (
            "User identity negotiation",
            "supported" if evt.EVT_USER_ID in events else "not supported (ignored)",
            "",
        ),
        (
            "ACSE timeout",
            f"{limits.acse_timeout:g} s from accept to the A-ASSOCIATE-RQ (TLS handshake included)",
            "`DICOM_ACSE_TIMEOUT`",
        ),
        ("DIMSE timeout", f"{ae.dimse_timeout:g} s", "`DICOM_DIMSE_TIMEOUT`"),
        (
            "Network timeout",
            f"{limits.network_timeout:g} s: an idle association; the rest of a PDU once it "
            "has started; every write",
            "`DICOM_NETWORK_TIMEOUT`",
        ),
        ("Implementation class UID", f"`{ae.implementation_class_uid}`", ""),
        ("Implementation version name", f"`{ae.implementation_version_name}`", ""),
    ]
    return table(("Policy", "Value (default)", "Setting"), rows)


def _status_rows(operation: str) -> list[tuple[str, str, str]]:
    rows = []
    for returned in statuses():
        if returned.operation != operation:
            continue
        kind = status_kind(returned.code)
        code = hex4(returned.code)
        if returned.error_id is not None:
            code += f" (Error ID {hex4(returned.error_id)})"
        rows.append((kind, code, returned.meaning))
    return rows


def status_kind(code: int) -> str:
    if code == status.SUCCESS:
        return "Success"
    if code in (status.PENDING, status.PENDING_WARNING_OPTIONAL_KEYS):
        return "Pending"
    if code == status.CANCEL:
        return "Cancel"
    if 0x0001 <= code <= 0x00FF or code in (0x0107, 0x0116) or (code & 0xF000) == 0xB000:
        return "Warning"
    return "Failure"


def status_table(*operations: str) -> str:
    rows = []
    for operation in operations:
        rows += [(operation, *row) for row in _status_rows(operation)]
    return table(("Operation", "Status", "Code", "Meaning in this product"), rows)


def _statuses_of(section: str) -> Callable[[], str]:
    def render() -> str:
        return status_table(*(op for op, name in STATUS_SECTIONS.items() if name == section))

    return render


echo_statuses = _statuses_of("echo-statuses")
mwl_statuses = _statuses_of("mwl-statuses")
mpps_statuses = _statuses_of("mpps-statuses")
store_statuses = _statuses_of("store-statuses")
commitment_statuses = _statuses_of("commitment-statuses")


def _key_rows(attrs: Iterable[Attr], depth: int = 0) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for attr in attrs:
        name = dictionary_description(attr.tag)
        # A sequence matches by the keys of its one item (worklist.matching), if any of
        # them can be matched on.
        if attr.is_sequence and any(c.match is not Match.NONE for c in attr.children):
            matching = "sequence matching: by the keys of its one item"
        else:
            matching = MATCHING[attr.match]
        returned = f"always `{attr.constant}`" if attr.constant else RETURNED[attr.source]
        rows.append((">" * depth + name, f"`{tag_text(attr.tag)}`", attr.vr, matching, returned))
        if attr.children:
            rows += _key_rows(attr.children, depth + 1)
    return rows


def mwl_keys() -> str:
    rows: list[tuple[str, ...]] = [
        (
            dictionary_description(attributes.SPECIFIC_CHARACTER_SET),
            f"`{tag_text(attributes.SPECIFIC_CHARACTER_SET)}`",
            "CS",
            "not a key: the query's own character set",
            f"always: `{responses.LATIN1}` or `{responses.UTF8}` (see character sets)",
        )
    ]
    rows += _key_rows(attributes.TOP_ATTRIBUTES)
    return table(("Attribute", "Tag", "VR", "Matching", "Returned"), rows)


def mpps_attributes() -> str:
    def names(tags: Iterable[int]) -> str:
        return ", ".join(f"{dictionary_description(t)} `{tag_text(t)}`" for t in sorted(tags))

    rows = [
        ("N-CREATE: present with a value (type 1)", names(validation.CREATE_TYPE_1)),
        ("N-CREATE: present, may be empty (type 2)", names(validation.CREATE_TYPE_2)),
        ("N-SET: may be changed (every other attribute: 0x0106)", names(validation.SET_ALLOWED)),
        (
            "N-SET to COMPLETED or DISCONTINUED: must then have a value",
            names(validation.FINAL_REQUIRED),
        ),
    ]
    return table(("Rule", "Attributes"), rows)


def character_sets() -> str:
    accepted = ", ".join(f"`{term}`" for term in sorted(pydicom.charset.python_encoding) if term)
    rows = [
        (
            "Worklist answers (C-FIND)",
            f"`{responses.LATIN1}` when every value of the answer fits ISO 8859-1, else "
            f"`{responses.UTF8}` (UTF-8); chosen per answer, always sent",
        ),
        (
            "Queries (C-FIND identifiers) and MPPS datasets",
            "decoded with their own Specific Character Set (absent: the default repertoire); "
            "defined terms understood: " + accepted,
        ),
    ]
    return table(("Where", "Specific Character Set (0008,0005)"), rows)


def dicom_configuration() -> str:
    return settings_table(DICOM_SETTINGS)


# --- HL7 interface specification -------------------------------------------------------


def hl7_messages() -> str:
    rows = []
    for (kind, event), (structure, versions) in sorted(mapping.SUPPORTED.items()):
        if structure == mapping.ADT:
            if event == mapping.ADT_MERGE:
                use = "merge: the MRG-1 patient's orders move to the PID-3 patient"
            elif event == mapping.ADT_CHANGE_ID:
                use = "change of patient identifier: MRG-1 becomes PID-3"
            else:
                use = "create or update the patient's demographics"
        else:
            use = "new order, change, cancel or status change, by ORC-1 / ORC-5 (" + (
                "one requested procedure and step per ORC/OBR group)"
                if structure == mapping.ORM
                else "one step per IPC segment)"
            )
        rows.append((f"{kind}^{event}", ", ".join(sorted(versions)), use, "ACK"))
    return table(("Message (MSH-9)", "Versions (MSH-12)", "What the broker does", "Reply"), rows)


def msh_fields() -> str:
    return table(("Field", "Use"), [(f"MSH-{n}", use) for n, use in msh.FIELDS.items()])


def key_fields() -> str:
    return table(
        ("Field", "Messages", "Use"), [(k.field, k.messages, k.use) for k in mapping.KEY_FIELDS]
    )


def _reader_text(reader: Any) -> str:
    doc = (getattr(reader, "__doc__", "") or "").strip().splitlines()
    return doc[0].rstrip(".") if doc else ""


def _parts(source: Any) -> list[tuple[str, str]]:
    """[(field, how it is read)] of one row source, in the order they are tried."""
    if source is None:
        return []
    if isinstance(source, mapping.FirstOf):
        return [part for s in source.sources for part in _parts(s)]
    return [(source.label(), _reader_text(source.read))]


def _where(source: Any) -> str:
    if source is None:
        return "device registry (by modality and location)"
    return " else ".join(label for label, _ in _parts(source))


def field_mapping() -> str:
    rows = []
    for row in (*mapping.PATIENT_ROWS, *mapping.ORDER_ROWS):
        orm, omi = row.source(mapping.ORM), row.source(mapping.OMI)
        # How each field is read, once per field (ORM and OMI may try them in another order).
        how = dict([*_parts(orm), *_parts(omi)])
        text = (
            next(iter(how.values()))
            if len(how) == 1
            else "; ".join(f"{label}: {reading}" for label, reading in how.items())
        )
        rows.append((row.attribute, _where(orm), _where(omi), text, ".".join(row.target)))
    return table(("DICOM attribute", "ORM^O01, OMG^O19", "OMI^O23", "Read as", "Stored in"), rows)


def order_status() -> str:
    rows = [(control, order, sps) for (control, order), sps in mapping.DEFAULT_STATUS_TABLE.items()]
    return table(("ORC-1", "ORC-5", "Scheduled Procedure Step Status"), rows)


def hl7_charsets() -> str:
    rows = [
        (
            f"`{name}`" if name else "empty",
            charset.codec,
            f"`{charset.dicom}`" if charset.dicom else "none (default repertoire)",
        )
        for name, charset in charsets.CHARSETS.items()
    ]
    return table(("MSH-18", "Decoded as", "Specific Character Set (0008,0005)"), rows)


def ack_errors() -> str:
    names = {
        getattr(errors, name): name
        for name in dir(errors)
        if name.isupper() and isinstance(getattr(errors, name), str)
    }
    rows = [
        (code, names[code].replace("_", " ").capitalize(), when)
        for code, when in sorted(errors.WHEN.items())
    ]
    return table(("ERR code (HL7 table 0357)", "Condition", "Sent when"), rows)


_SAMPLE = {
    "patient_id": "PatientID",
    "patient_issuer": "IssuerOfPatientID",
    "admission_id": "AdmissionID",
    "accession_number": "AccessionNumber",
    "placer_order_number": "PlacerOrderNumberImagingServiceRequest",
    "filler_order_number": "FillerOrderNumberImagingServiceRequest",
    "requested_procedure_id": "RequestedProcedureID",
    "study_instance_uid": "StudyInstanceUID",
    "sps_id": "ScheduledProcedureStepID",
    "modality": "Modality",
    "station_ae_title": "ScheduledStationAETitle",
    "code_value": "CodeValue",
}


def _sample_message(message_type: str) -> str:
    step = ris.StepInfo(
        sps_id=_SAMPLE["sps_id"],
        modality=_SAMPLE["modality"],
        station_ae_title=_SAMPLE["station_ae_title"],
    )
    procedure = ris.ProcedureInfo(
        requested_procedure_id=_SAMPLE["requested_procedure_id"],
        study_instance_uid=_SAMPLE["study_instance_uid"],
        code_value="CodeValue",
        code_meaning="CodeMeaning",
        code_scheme="CodingScheme",
        steps=(step,),
    )
    order = ris.OrderInfo(
        patient_id=_SAMPLE["patient_id"],
        patient_issuer=_SAMPLE["patient_issuer"],
        patient_name="PatientName",
        birth_date=dt.date(2000, 1, 2),
        sex="PatientSex",
        admission_id=_SAMPLE["admission_id"],
        accession_number=_SAMPLE["accession_number"],
        placer_order_number=_SAMPLE["placer_order_number"],
        filler_order_number=_SAMPLE["filler_order_number"],
        placer_application="PlacerApplication^PlacerFacility",
        procedures=(procedure,),
    )
    return ris.build_status_message(
        order,
        order_status="OrderStatus",
        message_type=message_type,
        control_id="ControlID",
        sending_application="SendingApplication",
        sending_facility="SendingFacility",
        now=dt.datetime(2000, 1, 2, 3, 4, 5),
    )


_MEANING = {
    "PatientName": "Patient's Name (XPN)",
    "PatientSex": "Patient's Sex",
    "20000102": "Patient's Birth Date",
    "20000102030405": "time of the message",
    "OrderStatus": "IP, CM or DC",
    "ControlID": "a new control ID per message",
    "SendingApplication": "`HL7_RECEIVING_APPLICATION`",
    "SendingFacility": "`HL7_RECEIVING_FACILITY`",
    "PlacerApplication": "MSH-3 of the order's sender",
    "PlacerFacility": "MSH-4 of the order's sender",
    "FillerOrderNumberImagingServiceRequest": "Filler Order Number (else the Accession Number)",
    "CodeValue^CodeMeaning^CodingScheme": "Requested Procedure Code (value^meaning^scheme)",
}


def _describe(value: str) -> str:
    if value in _MEANING:
        return _MEANING[value]
    parts = value.split("^")
    if len(parts) > 1:
        return "^".join(_describe(p) if p else "" for p in parts)
    return value if value not in _SAMPLE.values() else dictionary_description(value)


def outbound_fields() -> str:
    """Every field the status messages carry, read from messages the code builds."""
    columns = list(ris.MESSAGE_TYPES)
    fields: dict[str, dict[str, str]] = {}
    for message_type in columns:
        for line in _sample_message(message_type).strip("\r").split("\r"):
            parts = line.split("|")
            name = parts[0]
            values = (
                [("1", "|"), *((str(n + 2), v) for n, v in enumerate(parts[1:]))]
                if name == "MSH"
                else [(str(n + 1), v) for n, v in enumerate(parts[1:])]
            )
            for number, value in values:
                if value:
                    key = f"{name}-{number}"
                    if value in _MEANING:
                        text = _MEANING[value]
                    elif (
                        key in ("MSH-1", "MSH-2")
                        or (value.isdigit() and len(value) < 4)
                        or value.isupper()
                        or value.replace(".", "").isdigit()
                    ):
                        text = f"`{value}`"
                    else:
                        text = _describe(value)
                    fields.setdefault(key, {})[message_type] = text

    def order(key: str) -> tuple[int, int]:
        segments = ["MSH", "PID", "PV1", "ORC", "OBR", "IPC"]
        name, number = key.split("-")
        return (segments.index(name) if name in segments else 99, int(number))

    rows = [
        (key, *(values.get(c, "") for c in columns))
        for key, values in sorted(fields.items(), key=lambda kv: order(kv[0]))
    ]
    return table(("Field", *columns), rows)


def outbound_messages() -> str:
    rows = [
        (
            name,
            msh9,
            version,
            "`RIS_HL7_MESSAGE`" + (" (default)" if name == defaults()["RIS_HL7_MESSAGE"] else ""),
        )
        for name, (msh9, version) in ris.MESSAGE_TYPES.items()
    ]
    return table(("RIS_HL7_MESSAGE", "MSH-9", "MSH-12", "Setting"), rows)


def mllp_framing() -> str:
    rows = [
        ("Start block", f"`0x{mllp.START.hex().upper()}` (VT)"),
        ("End block", " ".join(f"`0x{b:02X}`" for b in mllp.END) + " (FS CR)"),
        (
            "Largest inbound message",
            f"{defaults()['HL7_MAX_MESSAGE_BYTES']} bytes (`HL7_MAX_MESSAGE_BYTES`); larger: AR",
        ),
        ("Largest acknowledgement read from the RIS", f"{ris.MAX_ACK_BYTES} bytes"),
    ]
    return table(("Item", "Value"), rows)


def hl7_configuration() -> str:
    return settings_table(HL7_SETTINGS)


# --- IHE integration statement ----------------------------------------------------------


# IHE Scheduled Workflow ADT events: RAD-1 Patient Registration, RAD-12 Patient Update.
RAD_1_EVENTS = ("A01", "A04", "A05")
RAD_12_EVENTS = ("A08", "A40")
MWL_FIND = "1.2.840.10008.5.1.4.31"
MPPS = "1.2.840.10008.3.1.2.3.3"


def ihe_transactions() -> str:
    """Which Scheduled Workflow transactions the code supports, from the tables it runs on."""
    sop = {str(cx.abstract_syntax) for cx in default_ae().supported_contexts}
    # SOP classes the listener provides (a context only for the peer as SCP is not one).
    provided = {
        str(cx.abstract_syntax) for cx in default_ae().supported_contexts if _roles(cx)[1] == "Yes"
    }
    messages = sorted(f"{kind}^{event}" for kind, event in mapping.SUPPORTED)
    storage = sorted(u for u in sop if u.startswith("1.2.840.10008.5.1.4.1.1."))
    scu = scu_sop_classes()
    scu_storage = sorted(u for u in scu if u.startswith("1.2.840.10008.5.1.4.1.1."))

    def adt(events: Sequence[str]) -> list[str]:
        return [m for m in messages if m.startswith("ADT^") and m[4:] in events]

    orders = [m for m in messages if not m.startswith("ADT^")]
    other_adt = [
        m for m in messages if m.startswith("ADT^") and m[4:] not in (*RAD_1_EVENTS, *RAD_12_EVENTS)
    ]

    def row(name: str, role: str, how: str | list[str]) -> tuple[str, str, str, str]:
        text = ", ".join(how) if isinstance(how, list) else how
        return (name, role, "Yes" if text else "No", text)

    rows = [
        row("RAD-1 Patient Registration", "receiver (DSS/OF)", adt(RAD_1_EVENTS)),
        row("RAD-12 Patient Update", "receiver (DSS/OF)", adt(RAD_12_EVENTS)),
        row(
            "RAD-2 Placer Order Management",
            "receiver (DSS/OF)",
            [m for m in orders if m in ("ORM^O01", "OMG^O19")],
        ),
        row(
            "RAD-3 Filler Order Management",
            "sender (DSS/OF), status only: ORC-1 SC, ORC-5 IP / CM / DC",
            list(ris.MESSAGE_TYPES),
        ),
        row(
            "RAD-4 Procedure Scheduled, RAD-13 Procedure Update",
            "receiver, as an Image Manager is (ZDS-1 / IPC-3 Study Instance UID)",
            [m for m in orders if m in ("ORM^O01", "OMI^O23")],
        ),
        row(
            "RAD-5 Query Modality Worklist",
            "responder (DSS/OF)",
            "Modality Worklist C-FIND SCP" if MWL_FIND in sop else "",
        ),
        row(
            "RAD-6 Modality Procedure Step In Progress",
            "receiver (DSS/OF); not forwarded",
            "MPPS N-CREATE SCP" if MPPS in sop else "",
        ),
        row(
            "RAD-7 Modality Procedure Step Completed",
            "receiver (DSS/OF); not forwarded",
            "MPPS N-SET SCP" if MPPS in sop else "",
        ),
        row(
            "RAD-8 Modality Images Stored",
            "receiver (Image Manager / Archive)",
            f"Storage SCP, {len(storage)} SOP classes" if storage else "",
        ),
        row(
            "RAD-8 Modality Images Stored, forwarded",
            "sender, to the routing destinations (as a modality sends to an Image Archive)",
            f"Storage SCU, {len(scu_storage)} SOP classes" if scu_storage else "",
        ),
        row(
            "RAD-10 Storage Commitment",
            "responder (Image Manager)",
            "Storage Commitment Push Model SCP" if STORAGE_COMMITMENT in provided else "",
        ),
        row(
            "RAD-10 Storage Commitment, for forwarded studies",
            "requester, to destinations that require it",
            "Storage Commitment Push Model SCU" if STORAGE_COMMITMENT in scu else "",
        ),
        row("Other ADT events accepted (outside Scheduled Workflow)", "receiver", other_adt),
    ]
    return table(("Transaction", "Broker's part", "Supported", "How"), rows)


DOCUMENTS: dict[str, dict[str, Callable[[], str]]] = {
    "dicom-conformance-statement.md": {
        "network-services": network_services,
        "association-policies": association_policies,
        "presentation-contexts": presentation_contexts,
        "echo-statuses": echo_statuses,
        "mwl-keys": mwl_keys,
        "mwl-statuses": mwl_statuses,
        "mpps-attributes": mpps_attributes,
        "mpps-statuses": mpps_statuses,
        "store-statuses": store_statuses,
        "commitment-statuses": commitment_statuses,
        "dicom-configuration": dicom_configuration,
        "character-sets": character_sets,
    },
    "hl7-interface.md": {
        "messages": hl7_messages,
        "msh-fields": msh_fields,
        "key-fields": key_fields,
        "field-mapping": field_mapping,
        "order-status": order_status,
        "hl7-charsets": hl7_charsets,
        "ack-errors": ack_errors,
        "outbound-messages": outbound_messages,
        "outbound-fields": outbound_fields,
        "mllp": mllp_framing,
        "hl7-configuration": hl7_configuration,
    },
    "ihe-integration-statement.md": {
        "ihe-transactions": ihe_transactions,
    },
}


def render(text: str, sections: dict[str, Callable[[], str]]) -> tuple[str, list[str]]:
    """Regenerate every marked section; return the text and the sections that changed.

    A marker without a generator, or a generator without its marker, is an error: the
    document and the code would disagree on what is generated.
    """
    found = [m.group("name") for m in SECTION.finditer(text)]
    unknown = sorted(set(found) - set(sections))
    missing = sorted(set(sections) - set(found))
    if unknown or missing:
        raise CommandError(
            "generated sections do not match the code: "
            + "; ".join(
                [f"unknown section {n}" for n in unknown]
                + [f"missing section {n}" for n in missing]
            )
        )
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        body = sections[name]()
        if body != match.group("body"):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return SECTION.sub(replace, text), changed


def section_text(document: str, name: str, folder: Path = DOCS_DIR) -> str:
    """The body of one generated section of a document, as it is on disk."""
    text = (folder / document).read_text(encoding="utf-8")
    for match in SECTION.finditer(text):
        if match.group("name") == name:
            return match.group("body")
    raise KeyError(f"{document} has no generated section {name}")


class Command(BaseCommand):
    help = "Regenerate the code-derived tables of docs/conformance/*.md (--check: only compare)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="change nothing; exit non-zero naming the sections that are out of date",
        )
        parser.add_argument("--docs", default=str(DOCS_DIR), help="the documents' folder")

    def handle(self, *args: Any, **options: Any) -> None:
        folder = Path(options["docs"])
        drift: list[str] = []
        for name, sections in DOCUMENTS.items():
            path = folder / name
            if not path.is_file():
                raise CommandError(f"{path} does not exist")
            text = path.read_text(encoding="utf-8")
            new_text, changed = render(text, sections)
            drift += [f"{name}: {section}" for section in changed]
            if changed and not options["check"]:
                path.write_text(new_text, encoding="utf-8")
                self.stdout.write(f"{name}: updated {', '.join(changed)}")
        if options["check"] and drift:
            raise CommandError(
                "conformance documents out of date (run manage.py conformance): " + "; ".join(drift)
            )
        if not drift:
            self.stdout.write("conformance documents are up to date")
