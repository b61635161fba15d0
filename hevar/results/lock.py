"""One process at a time in a run folder: a lock file, ``RUN/.lock``.

Two ``hevar sweep`` processes on the same ``--out`` (or ``--resume``) would interleave their point
files and manifests. The runner holds this lock from before its first write until its last, and a
second process is refused in one line naming the holder (pid, host, start time).

Where the OS has ``fcntl`` the lock is an advisory ``flock`` on the file: the kernel drops it when
its holder exits in any way (SIGKILL included), so a lock left by a killed run is free by
construction and is simply taken over. The file holds the holder's ``pid``, ``host`` and
``started`` (JSON) only to name it in the message. Elsewhere (Windows) the file is created with
``O_EXCL``; one that exists is stale, and taken over, when it names a process of this host that
is no longer running.

The holder unlinks the file when it releases the lock. A process that opened the file just before
that unlink could lock the old, now nameless, file; after locking, the path is therefore checked
to still name the locked file, and the attempt is repeated otherwise.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hevar.errors import UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


def _holder() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """The lock on ``run_dir`` for this process; a context manager. ``name`` is the option that named
    the folder (``out`` or ``resume``), for the message. ``took_over`` tells whether a lock file left
    by a process that no longer runs was found (and taken over)."""

    def __init__(self, run_dir: Path, name: str = "out") -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.name = name
        self.took_over = False
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        for _ in range(100):  # retried only when the holder unlinked the file under us
            if self._try_once():
                return self
        raise UsageError(f"The '{self.name}' parameter names a run folder whose lock {self.path} keeps changing "
                         "hands; another hevar process is starting there. Try again.", param=self.name)

    def _refuse(self, holder: dict[str, Any]) -> UsageError:
        who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('started', '?')}"
               if holder else "another process")
        return UsageError(f"The '{self.name}' parameter names a run folder another hevar sweep is writing "
                          f"({self.path.parent}: {who}). Wait for it to finish, or use another --out folder.",
                          param=self.name)

    def _try_once(self) -> bool:
        if fcntl is None:  # pragma: no cover - exercised by a test that hides fcntl
            return self._try_exclusive()
        existed = self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._refuse(_read_holder(self.path)) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder unlinked it between our open and our lock
            os.close(fd)
            return False
        self.took_over = existed and bool(_read_holder(self.path))
        self._write(fd)
        return True

    def _try_exclusive(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read_holder(self.path)
            if holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                self.took_over = True
                return False
            raise self._refuse(holder) from None
        self._write(fd)
        return True

    def _write(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(_holder()) + "\n").encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: nobody else can hold it now
        except OSError:
            pass
        os.close(fd)  # drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
