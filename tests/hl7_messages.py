"""Builders of HL7 v2 test messages: fields by number, so a test names what it sets."""

from __future__ import annotations

import zlib
from collections.abc import Mapping

CR = "\r"


def segment(name: str, fields: Mapping[int, str]) -> str:
    """``segment("PID", {3: "123", 5: "DOE^JOHN"})`` -> ``PID|||123||DOE^JOHN``."""
    last = max(fields, default=0)
    values = [fields.get(n, "") for n in range(1, last + 1)]
    return "|".join([name, *values])


def msh(
    message_type: str = "ORM^O01",
    control_id: str = "MSG0001",
    version: str = "2.3.1",
    charset: str = "",
    sending: str = "RIS",
    facility: str = "HOSP",
) -> str:
    fields = f"MSH|^~\\&|{sending}|{facility}|WORKLIST|BROKER|20261125090000||{message_type}|{control_id}|P|{version}"
    if charset:
        fields += "||||||" + charset
    return fields


def pid(patient_id: str = "PAT1^^^HOSP", name: str = "DOE^JOHN", **extra: str) -> str:
    fields = {3: patient_id, 5: name, 7: "19700102", 8: "M"}
    fields.update({int(k[1:]): v for k, v in extra.items()})
    return segment("PID", fields)


def orm(
    *,
    control_id: str = "MSG0001",
    version: str = "2.3.1",
    charset: str = "",
    patient: str | None = None,
    orc: Mapping[int, str] | None = None,
    obr: Mapping[int, str] | None = None,
    extra: list[str] | None = None,
    after_obr: list[str] | None = None,
    groups: int = 1,
    sending: str = "RIS",
    zds: bool = True,
) -> str:
    """An ORM^O01 with one (or ``groups``) ORC/OBR/ZDS order groups."""
    lines = [msh("ORM^O01", control_id, version, charset, sending), patient or pid()]
    lines += extra or []
    for i in range(1, groups + 1):
        orc_fields = {1: "NW", 2: f"PL{i}", 3: f"FI{i}", 5: "SC", 7: "^^^20261126093000^^R"}
        orc_fields.update(orc or {})
        obr_fields = {
            1: str(i),
            2: f"PL{i}",
            3: f"FI{i}",
            4: "^^^P1^CT head plain^LOC",
            18: "ACC1",
            19: f"RP{i}",
            20: f"SPS{i}",
            24: "CT",
        }
        obr_fields.update(obr or {})
        lines.append(segment("ORC", orc_fields))
        lines.append(segment("OBR", obr_fields))
        lines += after_obr or []
        accession = obr_fields[18]
        uid = f"1.2.826.0.1.99.{zlib.crc32(accession.encode())}.{i}"
        if zds:
            lines.append(segment("ZDS", {1: f"{uid}^100^Application^DICOM"}))
    return CR.join(lines) + CR


def omi(
    *,
    control_id: str = "MSG0002",
    version: str = "2.5.1",
    charset: str = "",
    orc: Mapping[int, str] | None = None,
    ipcs: list[Mapping[int, str]] | None = None,
    tq1: Mapping[int, str] | None = None,
    obr: Mapping[int, str] | None = None,
    patient: str | None = None,
    message_type: str = "OMI^O23^OMI_O23",
) -> str:
    """An OMI^O23 with one order group and its IPC segments (default: two)."""
    lines = [msh(message_type, control_id, version, charset), patient or pid()]
    orc_fields = {1: "NW", 2: "PL1", 3: "FI1", 5: "SC"}
    orc_fields.update(orc or {})
    tq1_fields = {1: "1", 7: "20261126100000+0200", 9: "S"}
    tq1_fields.update(tq1 or {})
    obr_fields = {1: "1", 2: "PL1", 3: "FI1", 4: "CTH^CT head", 16: "123^Jones^Ann"}
    obr_fields.update(obr or {})
    lines += [segment("ORC", orc_fields), segment("TQ1", tq1_fields), segment("OBR", obr_fields)]
    for ipc in ipcs or [
        {1: "ACC2", 2: "RP1", 3: "1.2.826.0.1.99.21", 4: "SPS1", 5: "MR", 6: "P1^Brain^LOC"},
        {1: "ACC2", 2: "RP1", 3: "1.2.826.0.1.99.21", 4: "SPS2", 5: "MR", 6: "P2^Spine^LOC"},
    ]:
        lines.append(segment("IPC", ipc))
    return CR.join(lines) + CR


def adt(
    event: str,
    *,
    control_id: str = "ADT0001",
    version: str = "2.5",
    patient: str | None = None,
    mrg: str | None = None,
    extra: list[str] | None = None,
) -> str:
    lines = [msh(f"ADT^{event}", control_id, version), segment("EVN", {1: event}), patient or pid()]
    if mrg is not None:
        lines.append(segment("MRG", {1: mrg}))
    lines += extra or []
    return CR.join(lines) + CR
