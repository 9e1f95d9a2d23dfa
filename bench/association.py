"""Association overhead of the DICOM listener: associate, release, and an idle
association's CPU, from a client on a bare socket (no client library in the way).

Run from the project root (a script that prints figures, not a test):

    .venv/bin/python bench/association.py
    .venv/bin/python bench/association.py --reference /tmp/ref   # another tree, alternating

Each listener is ``manage.py dicom_server`` of its tree, its own process, on a scratch
SQLite file. A round: ``--associations`` times connect, A-ASSOCIATE-RQ (one Modality
Worklist context) until the A-ASSOCIATE-AC ("associate"), A-RELEASE-RQ until the
A-RELEASE-RP ("release"), 20 ms apart; then one association left idle for two seconds,
the listener's CPU over them read from ``/proc``. With ``--reference``, the rounds
alternate between the two listeners, and the figures are medians over all of a
listener's associations, and over its rounds for the CPU.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import cpu_seconds, free_port, wait_for_port  # noqa: E402
from tests.raw_scu import RawScu  # noqa: E402

RELEASE_RQ = bytes([0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0])


class Listener:
    def __init__(self, tree: Path, scratch: Path) -> None:
        self.tree = tree
        self.port = free_port()
        scratch.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{scratch / 'association.sqlite3'}",
            "CELERY_BROKER_URL": "memory://",
            "LOG_LEVEL": "WARNING",
        }
        if not (tree / "var" / "secret_key").exists():
            env.setdefault("SECRET_KEY", "bench-association-only")
        python = sys.executable
        subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=tree, env=env, check=True)
        self.process = subprocess.Popen(
            [python, "manage.py", "dicom_server", "--port", str(self.port)],
            cwd=tree,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process, f"the listener of {tree}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def associate(port: int) -> tuple[RawScu, float]:
    started = time.perf_counter()
    scu = RawScu.connect("127.0.0.1", port, os.environ.get("BROKER_AE_TITLE", "WORKLIST"))
    scu.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return scu, time.perf_counter() - started


def release(scu: RawScu) -> float:
    started = time.perf_counter()
    scu.sock.sendall(RELEASE_RQ)
    pdu_type, _ = scu.read_pdu()
    assert pdu_type == 0x06, f"expected A-RELEASE-RP, got PDU type {pdu_type:#x}"
    seconds = time.perf_counter() - started
    scu.sock.close()
    return seconds


def one_round(listener: Listener, associations: int, figures: dict[str, list[float]]) -> None:
    for _ in range(associations):
        scu, seconds = associate(listener.port)
        figures["associate"].append(seconds)
        figures["release"].append(release(scu))
        time.sleep(0.02)
    scu, _ = associate(listener.port)
    time.sleep(0.2)
    before = cpu_seconds(listener.process.pid)
    time.sleep(2.0)
    figures["idle"].append((cpu_seconds(listener.process.pid) - before) / 2.0)
    release(scu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--associations", type=int, default=200, help="per round")
    parser.add_argument("--reference", type=Path, help="another tree of the broker")
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    if args.reference is not None:
        trees["reference"] = args.reference.resolve()
    results: dict[str, dict[str, list[float]]] = {
        name: {"associate": [], "release": [], "idle": []} for name in trees
    }
    with tempfile.TemporaryDirectory(prefix="bench_association_") as scratch:
        listeners = {
            name: Listener(tree, Path(scratch) / name.replace(" ", "_"))
            for name, tree in trees.items()
        }
        try:
            for round_ in range(args.rounds):
                names = list(trees)
                names = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in names:
                    one_round(listeners[name], args.associations, results[name])
        finally:
            for listener in listeners.values():
                listener.stop()
    print(
        f"{args.rounds} rounds of {args.associations} associations per listener, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for name, figures in results.items():
        print(
            f"{name:<10} ({trees[name]}): associate median "
            f"{statistics.median(figures['associate']) * 1000:.2f} ms, release median "
            f"{statistics.median(figures['release']) * 1000:.2f} ms, one idle association "
            f"{statistics.median(figures['idle']) * 100:.1f} % of a core"
        )


if __name__ == "__main__":
    main()
