"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol): <VT> message <FS><CR>.

Pure and socket-free: feed it whatever TCP delivered, take out complete frames. Bytes
outside a frame are counted and dropped. A frame that grows past the maximum size is
skipped up to its end and reported as ``Oversized`` (with its first bytes, enough to read
MSH and reject it), so the connection stays usable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

START = b"\x0b"
END_BLOCK = b"\x1c"
END = b"\x1c\x0d"
HEAD_BYTES = 4096  # kept of an oversized message, to read its MSH


@dataclass(frozen=True)
class Oversized:
    head: bytes
    size: int  # bytes received before the frame ended


@dataclass
class FrameDecoder:
    max_size: int
    _buffer: bytearray = field(default_factory=bytearray)
    _in_frame: bool = False
    _skipping: bool = False
    _skipped: int = 0
    _head: bytes = b""
    _trailer_cr: bool = False  # the frame's <CR> may arrive in the next read
    discarded: int = 0  # bytes received outside any frame

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        """Add received bytes; return every frame completed by them."""
        frames: list[bytes | Oversized] = []
        pos = 0
        size = len(data)
        if self._trailer_cr and size:
            self._trailer_cr = False
            if data[0] == 0x0D:
                pos = 1
        while pos < size:
            if not self._in_frame:
                start = data.find(START, pos)
                if start < 0:
                    self.discarded += size - pos
                    return frames
                self.discarded += start - pos
                self._in_frame = True
                self._buffer.clear()
                pos = start + 1
                continue
            end = data.find(END_BLOCK, pos)
            chunk_end = size if end < 0 else end
            if self._skipping:
                self._skipped += chunk_end - pos
            else:
                self._buffer += data[pos:chunk_end]
                if len(self._buffer) > self.max_size:
                    self._skipping = True
                    self._head = bytes(self._buffer[:HEAD_BYTES])
                    self._skipped = len(self._buffer)
                    self._buffer.clear()
            if end < 0:
                return frames
            if self._skipping:
                frames.append(Oversized(self._head, self._skipped))
                self._skipping = False
                self._head = b""
            else:
                frames.append(bytes(self._buffer))
            self._buffer.clear()
            self._in_frame = False
            # The <CR> after <FS> belongs to the frame trailer.
            pos = end + 1
            if pos < size and data[pos] == 0x0D:
                pos += 1
            elif pos == size:
                self._trailer_cr = True
        return frames

    @property
    def partial(self) -> bool:
        """True while a frame has started but not ended."""
        return self._in_frame


def frame(message: bytes) -> bytes:
    return START + message + END
