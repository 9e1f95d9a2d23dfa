"""`core.listeners.wait_for_stop_signal` returns on a SIGTERM that the kernel delivered to
another thread than the main one (it may: the DICOM listener runs several threads per
association). It used to wait until a second signal reached the main thread, and `serve`
killed the DICOM listener after STOP_TIMEOUT (seen once in CI, in test_shutdown)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from django.conf import settings

# A process whose main thread waits for the stop signal while another of its threads
# sends SIGTERM to itself alone (pthread_kill), then stays busy.
PROGRAM = textwrap.dedent(
    """
    import signal, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    from core.listeners import wait_for_stop_signal

    def worker():
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        time.sleep(60)

    threading.Thread(target=worker, daemon=True).start()
    print(int(wait_for_stop_signal()), flush=True)
    """
)


def test_a_sigterm_received_by_another_thread_stops_the_wait() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(Path(settings.BASE_DIR))],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["15"]  # SIGTERM
