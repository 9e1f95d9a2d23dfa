"""MSH-18 character sets: which Python codec decodes a message, which DICOM term names it.

Decoding is strict: bytes that are not valid in the declared character set are an
application error, never replaced, so the worklist never shows mojibake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hl7v2.errors import DATA_TYPE_ERROR, UNSUPPORTED_VERSION_ID, MappingError


@dataclass(frozen=True)
class Charset:
    codec: str
    dicom: str  # Specific Character Set (0008,0005); "" is the default repertoire


# HL7 table 0211 -> (Python codec, DICOM defined term); see the shared mapping document.
CHARSETS: dict[str, Charset] = {
    "": Charset("ascii", ""),
    "ASCII": Charset("ascii", ""),
    "8859/1": Charset("latin-1", "ISO_IR 100"),
    "8859/2": Charset("iso8859-2", "ISO_IR 101"),
    "8859/3": Charset("iso8859-3", "ISO_IR 109"),
    "8859/4": Charset("iso8859-4", "ISO_IR 110"),
    "8859/5": Charset("iso8859-5", "ISO_IR 144"),
    "8859/6": Charset("iso8859-6", "ISO_IR 127"),
    "8859/7": Charset("iso8859-7", "ISO_IR 126"),
    "8859/8": Charset("iso8859-8", "ISO_IR 138"),
    "8859/9": Charset("iso8859-9", "ISO_IR 148"),
    "8859/15": Charset("iso8859-15", "ISO_IR 203"),
    "UNICODE UTF-8": Charset("utf-8", "ISO_IR 192"),
    "ISO IR87": Charset("iso2022_jp_2", "ISO 2022 IR 87"),
    "ISO IR159": Charset("iso2022_jp_2", "ISO 2022 IR 159"),
    "ISO IR14": Charset("iso2022_jp_ext", "ISO 2022 IR 13"),
}

# C1 control characters are never text in an 8859 part; their presence means the
# bytes are in some other encoding (typically UTF-8 or Windows-1252).
_C1 = re.compile("[\x80-\x9f]")


def charset_for(msh18: str) -> Charset:
    """The character set named by MSH-18 (its first repetition)."""
    try:
        return CHARSETS[msh18.strip().upper()]
    except KeyError:
        raise MappingError(
            f"unsupported character set {msh18!r}",
            segment="MSH",
            field=18,
            code=UNSUPPORTED_VERSION_ID,
        ) from None


def decode(raw: bytes, msh18: str) -> str:
    """Decode a message strictly in its declared character set.

    1. Look up the codec for MSH-18 (unknown -> error naming MSH-18).
    2. Decode strictly; undecodable bytes -> error with the byte offset.
    3. For the single-byte 8859 parts, which accept almost any byte, refuse text that
       is evidently something else: C1 control characters, or non-ASCII bytes that
       form valid UTF-8 (a UTF-8 sender that declared Latin-1).
    """
    charset = charset_for(msh18)
    if raw.startswith(b"\xef\xbb\xbf") and charset.codec == "utf-8":
        raw = raw[3:]
    try:
        text = raw.decode(charset.codec)
    except UnicodeDecodeError as exc:
        raise MappingError(
            f"byte 0x{raw[exc.start]:02X} at offset {exc.start} is not valid "
            f"{msh18 or 'ASCII'} (MSH-18)",
            segment="MSH",
            field=18,
            code=DATA_TYPE_ERROR,
        ) from None
    if charset.codec.startswith("iso8859") or charset.codec == "latin-1":
        if _C1.search(text):
            raise MappingError(
                f"control characters 0x80-0x9F are not {msh18} text; wrong MSH-18?",
                segment="MSH",
                field=18,
                code=DATA_TYPE_ERROR,
            )
        if not raw.isascii() and _is_utf8(raw):
            raise MappingError(
                f"text declared {msh18} is UTF-8; declare UNICODE UTF-8 in MSH-18",
                segment="MSH",
                field=18,
                code=DATA_TYPE_ERROR,
            )
    return text


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def ack_codec(msh18: str) -> str:
    """The codec to encode the ACK in: the message's own, or ASCII if it was unusable."""
    charset = CHARSETS.get(msh18.strip().upper())
    return charset.codec if charset else "ascii"
