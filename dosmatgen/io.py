"""Crash-safe file writing: write to a temporary file beside the target, then rename.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> with atomic_write(os.path.join(d, "x.txt"), "w") as f:
...     _ = f.write("hello")
>>> open(os.path.join(d, "x.txt")).read()
'hello'
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import socket
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from dosmatgen.errors import DataError

#: What reading a damaged ``.npz`` (a zip archive) can raise: truncated, bad CRC, not a zip.
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, KeyError,
                                                   zipfile.BadZipFile, zlib.error)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file in ``path``'s folder; on success rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    with _temp_path(Path(path), ".tmp") as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_save_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")


def atomic_save_csv(path: str | os.PathLike, rows: Sequence[dict[str, Any]],
                    columns: Sequence[str] | None = None) -> None:
    """``rows`` as CSV with ``columns`` (default: :func:`csv_columns`); None is written as an empty cell."""
    cols = list(columns) if columns else csv_columns(rows)
    with atomic_write(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in cols} for r in rows)


def csv_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every key of ``rows``, in the order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r))


def atomic_temp_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """For writers that need a file name (``np.savez``, ``torch.save``, CIF writers): yields a
    temporary path beside ``path`` and renames it over ``path`` on success."""
    return _temp_path(Path(path), ".tmp" + Path(path).suffix)


@contextlib.contextmanager
def _temp_path(path: Path, suffix: str) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out``; on success it replaces ``out`` in one rename
    (an old ``out`` is moved aside first, then deleted) with the usual permissions of new files and
    folders; on failure it is removed and ``out`` is left as it was. Leftovers of runs killed while
    writing are removed afterwards (callers hold :func:`output_lock`, so none is live)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(stage):  # mkdtemp and temp files are private
        os.chmod(root, 0o777 & ~umask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~umask)
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "previous")
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for pattern in (f".{out.name}.staging-*", f".{out.name}.old-*"):
        for leftover in out.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _default_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give (mkstemp makes files 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail early, before any work, when ``path`` (a file or folder to be written) cannot be
    written: its nearest existing ancestor must be a writable folder (no file in the way).

    >>> check_writable("/proc/version/x", "--out")
    Traceback (most recent call last):
    ...
    dosmatgen.errors.DataError: cannot write --out /proc/version/x: /proc/version is a file, not a folder
    """
    path = Path(path)
    if path.exists() and path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise DataError(f"cannot write {what} {path}: the folder is not writable")
    if path.exists() and not path.is_dir() and not os.access(path, os.W_OK):
        raise DataError(f"cannot write {what} {path}: the file is read-only")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"cannot write {what} {path}: {parent} is not writable")
    return path


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, what: str = "output", wait: float = 0.0) -> Iterator[Path]:
    """Claim ``path`` for this process for the duration of the block: ``<path>.lock`` is created
    atomically (``O_EXCL``) with this process's host, pid and start time. A second run that
    wants the same output stops with a message naming the first (after waiting up to ``wait``
    seconds for it, for short critical sections); a lock whose process is gone (same host, pid
    not running) is taken over. The lock file is removed on exit."""
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    check_writable(lock, what)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    deadline = time.monotonic() + wait
    for _ in range(2 + int(wait * 40)):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _read_lock(lock)
            if other is not None and _alive(other) and time.monotonic() < deadline:
                time.sleep(0.05)  # a short critical section of another run: try again
                continue
            if other is not None and _alive(other):
                raise DataError(f"{what} {path} is being written by another run (pid {other.get('pid')} on "
                                f"{other.get('host')}, started {other.get('started')}); wait for it, or delete "
                                f"{lock} if that run is gone") from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise DataError(f"cannot claim {what} {path}: {lock} keeps reappearing")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            if (_read_lock(lock) or {}).get("pid") == me["pid"]:
                os.unlink(lock)


def _read_lock(lock: Path) -> dict[str, Any] | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the process that wrote a lock still runs (another host's lock counts as alive)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True
