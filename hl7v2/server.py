"""The MLLP listener: asyncio for the sockets, a thread pool for the database work.

Each connection may carry many messages; each message is acknowledged only after
``message_receive`` has committed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from hl7v2.mllp import FrameDecoder, FrameTooLarge, frame
from hl7v2.services import message_receive

logger = logging.getLogger(__name__)


def _receive_in_thread(raw: bytes, peer: str) -> bytes:
    close_old_connections()
    try:
        return message_receive(raw, peer=peer).ack
    finally:
        close_old_connections()


async def handle_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    address = writer.get_extra_info("peername")
    peer = f"{address[0]}:{address[1]}" if address else "?"
    logger.info("HL7 connection from %s", peer)
    decoder = FrameDecoder(max_size=settings.HL7_MAX_MESSAGE_BYTES)
    count = 0
    try:
        while True:
            try:
                data = await asyncio.wait_for(reader.read(65536), settings.HL7_IDLE_TIMEOUT)
            except TimeoutError:
                logger.info("HL7 connection from %s idle, closing", peer)
                break
            if not data:
                break
            try:
                frames = decoder.feed(data)
            except FrameTooLarge as exc:
                logger.warning("HL7 connection from %s: %s, closing", peer, exc)
                break
            for raw in frames:
                ack = await sync_to_async(_receive_in_thread, thread_sensitive=False)(raw, peer)
                writer.write(frame(ack))
                await writer.drain()
                count += 1
    except (ConnectionError, OSError) as exc:
        logger.info("HL7 connection from %s lost: %s", peer, exc)
    finally:
        if decoder.discarded:
            logger.warning(
                "HL7 connection from %s: ignored %d bytes outside frames", peer, decoder.discarded
            )
        if decoder.partial:
            logger.warning("HL7 connection from %s closed mid-message; nothing applied", peer)
        logger.info("HL7 connection from %s closed after %d messages", peer, count)
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def tls_context() -> ssl.SSLContext | None:
    if not settings.HL7_TLS_CERT:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.HL7_TLS_CERT, settings.HL7_TLS_KEY)
    return context


async def serve(host: str, port: int, *, ready: Callable[[], None] | None = None) -> None:
    server = await asyncio.start_server(
        handle_connection, host, port, ssl=tls_context(), reuse_address=True
    )
    if ready is not None:
        ready()
    async with server:
        await server.serve_forever()
