"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol): <VT> message <FS><CR>.

Pure and socket-free: feed it whatever TCP delivered, take out complete frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

START = b"\x0b"
END = b"\x1c\x0d"


class FrameTooLarge(Exception):
    """A frame grew past the maximum message size."""


@dataclass
class FrameDecoder:
    max_size: int
    _buffer: bytearray = field(default_factory=bytearray)
    _in_frame: bool = False
    discarded: int = 0  # bytes received outside any frame

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every frame completed by them."""
        frames: list[bytes] = []
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if not self._in_frame:
                start = data.find(START, pos)
                if start < 0:
                    self.discarded += len(data) - pos
                    return frames
                self.discarded += start - pos
                self._in_frame = True
                self._buffer.clear()
                pos = start + 1
                continue
            end = data.find(b"\x1c", pos)
            chunk_end = len(data) if end < 0 else end
            self._buffer += view[pos:chunk_end]
            if len(self._buffer) > self.max_size:
                self._in_frame = False
                self._buffer.clear()
                raise FrameTooLarge(f"message larger than {self.max_size} bytes")
            if end < 0:
                return frames
            frames.append(bytes(self._buffer))
            self._buffer.clear()
            self._in_frame = False
            # The <CR> after <FS> belongs to the frame trailer.
            pos = end + 1
            if pos < len(data) and data[pos : pos + 1] == b"\r":
                pos += 1
        return frames

    @property
    def partial(self) -> bool:
        """True while a frame has started but not ended."""
        return self._in_frame


def frame(message: bytes) -> bytes:
    return START + message + END
