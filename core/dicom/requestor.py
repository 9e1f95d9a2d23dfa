"""Help for pynetdicom associations we request (the SCU side): routing's sender, the
tests and benchmarks. No Django here."""

from __future__ import annotations

from typing import Any

from pynetdicom.pdu_primitives import A_ASSOCIATE


def keep_responses(assoc: Any) -> Any:
    """Work around a race in pynetdicom 3.0's requestor.

    Its reactor thread can take the response to a request just sent (``send_*`` reads a
    stale "paused" flag) and drop it as "unexpected", leaving the caller to time out.
    Such a response is put back on the queue the caller reads. Returns ``assoc``.
    """
    original = assoc._serve_request

    def serve(msg: Any, context_id: int) -> None:
        if not msg.is_valid_request:
            assoc.dimse.msg_queue.put((context_id, msg))
            return
        original(msg, context_id)

    assoc._serve_request = serve
    return assoc


def recover_rejection(assoc: Any) -> Any:
    """Work around another race in pynetdicom 3.0's requestor (``ACSE._negotiate_as_requestor``).

    After queueing its A-ASSOCIATE-RQ the association thread waits until the connection
    is made and then checks the socket's ``_is_connected`` to tell whether it was. The
    DUL thread meanwhile sends the request and reads the answer; a peer that rejects at
    once (DCMTK's ``storescp --refuse``) has its A-ASSOCIATE-RJ read and the socket
    closed (pynetdicom's AE-4: "issue the rejection, close the transport") before the
    association thread looks, when that thread is not scheduled for a few milliseconds
    (a loaded machine). The check then fails, the association is aborted as if it had
    never connected, and the rejection stays unread in the DUL's queue. Read from there,
    it is reported as the rejection it is. Returns ``assoc``.
    """
    if assoc.is_established or assoc.is_rejected:
        return assoc
    for primitive in list(assoc.dul.to_user_queue.queue):
        if isinstance(primitive, A_ASSOCIATE) and primitive.result in (0x01, 0x02):
            assoc.acceptor.primitive = primitive
            assoc.is_rejected = True
            assoc.is_aborted = False
            break
    return assoc
