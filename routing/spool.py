"""The spool: received instances as files under ROUTING_SPOOL_DIR.

A file appears whole or not at all: it is written to a temporary name in the same
folder, flushed to disk (fsync, unless ROUTING_SPOOL_FSYNC is off), then renamed, and
the folder is flushed too, so the rename survives a power cut. Its name holds the digest of its
content, so a changed copy of an instance is a new file and the old one is removed
only once the database points at the new one.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from django.conf import settings

TEMP_SUFFIX = ".part"


def root() -> Path:
    return Path(settings.ROUTING_SPOOL_DIR)


def relative_path(study_uid: str, sop_uid: str, digest: str) -> str:
    return f"{study_uid}/{sop_uid}.{digest[:16]}.dcm"


def absolute(relative: str) -> Path:
    return root() / relative


def write(relative: str, parts: list[bytes]) -> None:
    """Write ``parts`` to ``relative`` atomically; on any error leave nothing behind."""
    target = absolute(relative)
    folder = target.parent
    new_folder = not folder.is_dir()
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{target.name}.{os.getpid()}.{time.monotonic_ns()}{TEMP_SUFFIX}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        try:
            view = [memoryview(p) for p in parts]
            while view:
                written = os.writev(fd, view)
                while view and written >= len(view[0]):
                    written -= len(view[0])
                    view.pop(0)
                if view and written:
                    view[0] = view[0][written:]
            if settings.ROUTING_SPOOL_FSYNC:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if settings.ROUTING_SPOOL_FSYNC:
        _fsync_folder(folder)
        if new_folder:
            _fsync_folder(folder.parent)


def _fsync_folder(folder: Path) -> None:
    # The rename is durable once the folder itself is on disk.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            if settings.ROUTING_SPOOL_FSYNC:
                os.fsync(fd)
        finally:
            os.close(fd)


def remove(relative: str) -> None:
    target = absolute(relative)
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    with contextlib.suppress(OSError):
        target.parent.rmdir()  # only when empty


def remove_stale_temporaries(older_than: float) -> int:
    """Temporary files left by a listener killed mid-write; returns how many went."""
    removed = 0
    cutoff = time.time() - older_than
    base = root()
    if not base.is_dir():
        return 0
    for temp in base.glob(f"*/.*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
                removed += 1
    return removed
