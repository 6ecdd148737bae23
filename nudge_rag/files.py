"""Atomic file replacement, used by every writer in the project (models, reports, indexes, side files).

:func:`atomic_write` gives a file its new contents all at once: readers see the old file or the new one, never
a mix, and a failed or killed writer leaves nothing behind. It never widens a file's permissions: a file that
is replaced keeps its mode bits (and its owner and group, where the process may set them), and a side file that
belongs to another file (``like=``: the originals saved beside a FAISS index, say) is created no wider than it.

Example:
    >>> from nudge_rag.files import atomic_write, atomic_write_text
    >>> atomic_write_text("report.json", "{}\\n")
    >>> atomic_write("index.originals.npy", lambda fh: np.save(fh, old), like="index.faiss")
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_text", "file_mode", "glob_escape"]

PathLike = str | os.PathLike[str]


def atomic_write(path: PathLike, write: Callable[[BinaryIO], object], *, like: PathLike | None = None) -> None:
    """Call ``write(binary_file)`` on a temporary file beside ``path`` and rename it into place.

    Readers see the old file or the new one, never a mix. A failed ``write`` leaves nothing behind, and so does
    a killed process: on Linux the data goes to an unnamed ``O_TMPFILE`` inode that only gets a name (for the
    final rename) once fully written, so a ``kill -9`` mid-write frees it; elsewhere the temporary file carries
    the writer's pid and the next write to the same path removes temporaries whose writer is gone.

    Permissions (see :func:`file_mode`): a replaced file keeps its permission bits, and its owner and group
    where the process is allowed to set them (otherwise the writer's, as for any new file). A new file gets
    ``0o666`` minus the umask, further limited to the permission bits of ``like`` when given.

    Args:
        path: the file to create or replace; missing parent folders are created.
        write: called once with the temporary file opened for binary writing.
        like: the file that ``path`` belongs to (e.g. the index whose originals it holds): ``path`` is never
            given read or write permission that ``like`` lacks. Ignored when ``like`` does not exist.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    fd = _unnamed_file(target.parent)
    if fd is not None:
        _write_unnamed(fd, target, write, like)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            _set_permissions(fh.fileno(), target, like, created=0o600)  # mkstemp creates 0600
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str, *, like: PathLike | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, with the permissions of :func:`atomic_write`."""
    data = text.encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data), like=like)


def file_mode(path: PathLike, *, like: PathLike | None = None) -> int:
    """The permission bits :func:`atomic_write` gives ``path``; for writers that create a file some other way
    (a database file, say) and then ``os.chmod(path, file_mode(path, like=index))``.

    The current file's bits (``0o777`` part) when ``path`` exists, else ``0o666`` minus the umask; with ``like``
    (an existing file), bits that ``like`` lacks are removed in both cases.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    if like is not None:
        try:
            mode &= stat.S_IMODE(os.stat(like).st_mode) & 0o777
        except FileNotFoundError:
            pass
    return mode


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped (for ``Path.glob`` patterns built from a file name)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


# ---------------------------------------------------------------------------------------------- internals


def _set_permissions(fd: int, target: Path, like: PathLike | None, created: int | None) -> None:
    """Give the temporary file ``fd`` the mode (and, replacing ``target``, the owner) it will have as ``target``.

    ``created``: the mode the temporary file was created with, or None when the kernel applied the umask to
    ``0o666`` (then a new file without ``like`` needs no change).
    """
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    mode = file_mode(target, like=like)
    if old is not None:
        _chown(fd, old.st_uid, old.st_gid)  # before chmod: changing the owner may clear setuid/setgid bits
    if old is not None or like is not None or created is not None:
        os.fchmod(fd, mode)


def _chown(fd: int, uid: int, gid: int) -> None:
    """Owner and group of ``fd`` set to ``uid``/``gid`` as far as permitted (only root may give files away)."""
    if not hasattr(os, "fchown"):  # Windows
        return
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) == (uid, gid):
        return
    try:
        os.fchown(fd, uid, gid)
    except PermissionError:
        try:  # a member of the group may still set it
            os.fchown(fd, -1, gid)
        except PermissionError:
            pass


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


def _write_unnamed(fd: int, target: Path, write: Callable[[BinaryIO], object], like: PathLike | None) -> None:
    with os.fdopen(fd, "wb") as fh:
        write(fh)
        fh.flush()
        _set_permissions(fh.fileno(), target, like, created=None)
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


def _umask() -> int:
    """The process umask, read without changing it where ``/proc`` tells it (``os.umask`` must set it to read it,
    which briefly widens files other threads create meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the narrowest safe value while it is read
    os.umask(mask)
    return mask
