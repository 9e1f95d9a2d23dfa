"""Help for pynetdicom associations we request (the SCU side): routing's sender, the
tests and benchmarks. No Django here."""

from __future__ import annotations

from typing import Any


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
