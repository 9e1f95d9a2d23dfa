"""A DICOM SCU over a bare socket, for tests that must control when each PDU goes out.

pynetdicom's requestor reads every PDU as soon as it arrives (its DUL thread queues
them without bound), so a test built on it cannot say how many answers the peer had
sent when its C-CANCEL left. Here nothing is read until the test asks: the test reads
N answers, sends the C-CANCEL, and counts what follows. The PDUs are those of PS3.8
(A-ASSOCIATE-RQ built by hand, section 9.3.2); the DIMSE messages are encoded by
pynetdicom's own message classes, so only the framing is ours.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.dimse_messages import C_CANCEL_RQ, C_FIND_RQ
from pynetdicom.dimse_primitives import C_CANCEL, C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
MWL_FIND = "1.2.840.10008.5.1.4.31"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1.1"
PENDING = (0xFF00, 0xFF01)


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def _uid(uid: str) -> bytes:
    return uid.encode("ascii")


def associate_rq(
    calling: str, called: str, abstract: str, transfer_syntax: str, max_length: int
) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) proposing one presentation context, ID 1."""
    context = struct.pack(">BBBB", 1, 0, 0, 0)
    context += _item(0x30, _uid(abstract)) + _item(0x40, _uid(transfer_syntax))
    user = _item(0x51, struct.pack(">I", max_length)) + _item(0x52, _uid(IMPLEMENTATION_UID))
    body = struct.pack(">HH", 1, 0)
    # Called AE title (bytes 11-26), then calling AE title (27-42).
    body += called.ljust(16).encode("ascii") + calling.ljust(16).encode("ascii")
    body += b"\x00" * 32
    body += _item(0x10, _uid(APPLICATION_CONTEXT)) + _item(0x20, context) + _item(0x50, user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def command_elements(data: bytes) -> dict[int, bytes]:
    """A command set's elements (Implicit VR Little Endian) as {tag: value bytes}."""
    elements, offset = {}, 0
    while offset < len(data):
        group, element, length = struct.unpack_from("<HHI", data, offset)
        offset += 8
        elements[(group << 16) | element] = data[offset : offset + length]
        offset += length
    return elements


@dataclass
class Response:
    status: int
    command: dict[int, bytes]
    identifier: bytes | None
    size: int  # bytes of the PDUs that carried it


@dataclass
class RawScu:
    """One association, read only when asked."""

    sock: socket.socket
    context_id: int = 1
    transfer_syntax: str = ImplicitVRLittleEndian
    received_bytes: int = 0
    _fragments: dict[bool, bytes] = field(default_factory=dict)

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        called: str,
        *,
        calling: str = "RAWSCU",
        transfer_syntax: str = ImplicitVRLittleEndian,
        receive_buffer: int | None = None,
        tls: ssl.SSLContext | None = None,
        max_length: int = 0,
    ) -> RawScu:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            # Before connect, so that the window offered to the peer is this small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(60)
        sock.connect((host, port))
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        scu = cls(sock, transfer_syntax=transfer_syntax)
        sock.sendall(associate_rq(calling, called, MWL_FIND, transfer_syntax, max_length))
        pdu_type, body = scu.read_pdu()
        if pdu_type != 0x02:
            raise AssertionError(f"association not accepted: PDU type 0x{pdu_type:02X}")
        scu._check_accepted(body)
        return scu

    def _check_accepted(self, body: bytes) -> None:
        offset = 68  # protocol version, reserved, AE titles, reserved
        while offset < len(body):
            item_type, _, length = struct.unpack_from(">BBH", body, offset)
            if item_type == 0x21:
                context_id, _, result = struct.unpack_from(">BBB", body, offset + 4)
                if result != 0:
                    raise AssertionError(f"presentation context refused: result {result}")
                self.context_id = context_id
            offset += 4 + length

    @property
    def receive_buffer(self) -> int:
        """The receive buffer the kernel gave this socket (Linux doubles the request)."""
        return int(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def _recv_exactly(self, count: int) -> bytes:
        chunks, left = [], count
        while left:
            chunk = self.sock.recv(left)
            if not chunk:
                raise ConnectionError("the peer closed the connection")
            chunks.append(chunk)
            left -= len(chunk)
        self.received_bytes += count
        return b"".join(chunks)

    def read_pdu(self) -> tuple[int, bytes]:
        pdu_type, _, length = struct.unpack(">BBI", self._recv_exactly(6))
        return pdu_type, self._recv_exactly(length)

    def _send_message(self, message: Any) -> None:
        for primitive in message.encode_msg(self.context_id, 0):
            pdu = P_DATA_TF()
            pdu.from_primitive(primitive)
            self.sock.sendall(pdu.encode())

    def send_find(self, identifier: Dataset, msg_id: int) -> None:
        primitive = C_FIND()
        primitive.MessageID = msg_id
        primitive.AffectedSOPClassUID = MWL_FIND
        primitive.Priority = 2
        implicit = self.transfer_syntax == ImplicitVRLittleEndian
        little = self.transfer_syntax != "1.2.840.10008.1.2.2"
        primitive.Identifier = BytesIO(encode(identifier, implicit, little) or b"")
        message = C_FIND_RQ()
        message.primitive_to_message(primitive)
        self._send_message(message)

    def send_cancel(self, msg_id: int) -> None:
        primitive = C_CANCEL()
        primitive.MessageIDBeingRespondedTo = msg_id
        message = C_CANCEL_RQ()
        message.primitive_to_message(primitive)
        self._send_message(message)

    def read_response(self) -> Response:
        """The next whole DIMSE response (command set, then its identifier if any)."""
        command: dict[int, bytes] | None = None
        identifier = b""
        size = 0
        while True:
            pdu_type, body = self.read_pdu()
            size += 6 + len(body)
            if pdu_type != 0x04:
                raise AssertionError(f"expected P-DATA-TF, got PDU type 0x{pdu_type:02X}")
            offset = 0
            while offset < len(body):
                (length,) = struct.unpack_from(">I", body, offset)
                header = body[offset + 5]
                value = body[offset + 6 : offset + 4 + length]
                offset += 4 + length
                is_command, is_last = bool(header & 0x01), bool(header & 0x02)
                self._fragments[is_command] = self._fragments.get(is_command, b"") + value
                if not is_last:
                    continue
                data = self._fragments.pop(is_command)
                if is_command:
                    command = command_elements(data)
                    # Command Data Set Type 0x0101: no identifier follows.
                    if struct.unpack("<H", command[0x00000800])[0] == 0x0101:
                        return self._response(command, None, size)
                else:
                    identifier = data
            if command is not None and identifier:
                return self._response(command, identifier, size)

    @staticmethod
    def _response(command: dict[int, bytes], identifier: bytes | None, size: int) -> Response:
        (status,) = struct.unpack("<H", command[0x00000900])
        return Response(status, command, identifier, size)

    def release(self) -> None:
        self.sock.sendall(struct.pack(">BBIxxxx", 0x05, 0, 4))
        pdu_type, _ = self.read_pdu()
        if pdu_type != 0x06:
            raise AssertionError(f"expected A-RELEASE-RP, got PDU type 0x{pdu_type:02X}")
        self.sock.close()

    def close(self) -> None:
        self.sock.close()
