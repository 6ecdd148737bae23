"""File helpers used by every writer in the project: atomic replacement of a file's contents."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(binary_file)`` on a temporary file beside ``path`` and rename it into place.

    Readers see the old file or the new one, never a mix; the file gets the usual permissions
    (0666 minus the umask). A failed ``write`` leaves nothing behind, and so does a killed process: on Linux
    the data goes to an unnamed ``O_TMPFILE`` inode that only gets a name (for the final rename) once fully
    written, so a ``kill -9`` mid-write frees it; elsewhere the temporary file carries the writer's pid and
    the next write to the same path removes temporaries whose writer is gone.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    fd = _unnamed_file(target.parent)
    if fd is not None:
        _write_unnamed(fd, target, write)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _unnamed_file(folder: Path) -> int | None:
    """A writable fd of an unnamed file in ``folder`` (Linux ``O_TMPFILE``), or None where unsupported."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        dev = os.stat(folder).st_dev
        if dev not in _LINKABLE:
            _LINKABLE[dev] = _probe(folder, flag)
        if not _LINKABLE[dev]:
            return None
        return os.open(folder, flag | os.O_WRONLY, 0o666)  # the kernel applies the umask
    except OSError:  # e.g. a filesystem without O_TMPFILE support
        return None


# st_dev -> whether an O_TMPFILE file there can be given a name (some kernels and sandboxes refuse).
_LINKABLE: dict[int, bool] = {}


def _probe(folder: Path, flag: int) -> bool:
    name = folder / f".nudge-rag-probe.{os.getpid()}.{os.urandom(6).hex()}"
    try:
        fd = os.open(folder, flag | os.O_WRONLY, 0o600)
    except OSError:
        return False
    try:
        os.link(f"/proc/self/fd/{fd}", name, follow_symlinks=True)
        os.unlink(name)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _write_unnamed(fd: int, target: Path, write: Callable[[BinaryIO], object]) -> None:
    with os.fdopen(fd, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
        tmp = target.parent / f".{target.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
        os.link(f"/proc/self/fd/{fh.fileno()}", tmp, follow_symlinks=True)
    try:
        os.replace(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _remove_stale(target: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp`` beside ``target`` whose writing process no longer exists."""
    try:
        siblings = list(target.parent.glob(f".{glob_escape(target.name)}.*.tmp"))
    except OSError:
        return
    for tmp in siblings:
        pid = tmp.name[len(target.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                tmp.unlink()
            except OSError:
                pass


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
