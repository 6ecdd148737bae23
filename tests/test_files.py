"""nudge_rag.files: atomic replacement never widens a file's permissions (issue 18, item 9). Real files only."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from nudge_rag import files
from nudge_rag.files import atomic_write, atomic_write_text

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


def mode(path: os.PathLike[str] | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=["o_tmpfile", "mkstemp"])
def writer_path(request, monkeypatch, tmp_path):
    """Both ways a temporary file is made: Linux's unnamed O_TMPFILE inode and the named mkstemp fallback."""
    if request.param == "mkstemp":
        monkeypatch.setattr(files, "_unnamed_file", lambda folder: None)
    else:
        fd = files._unnamed_file(tmp_path)
        if fd is None:
            pytest.skip("this filesystem or kernel cannot give an O_TMPFILE file a name")
        os.close(fd)
    return request.param


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_rewrite_keeps_a_private_file_private(tmp_path, writer_path, umask_022):
    index = tmp_path / "index.faiss"
    index.write_bytes(b"old")
    os.chmod(index, 0o600)
    atomic_write(index, lambda fh: fh.write(b"new"))
    assert index.read_bytes() == b"new"
    assert mode(index) == 0o600


@pytest.mark.parametrize("bits", [0o600, 0o640, 0o444, 0o755])
def test_rewrite_keeps_any_mode(tmp_path, writer_path, umask_022, bits):
    path = tmp_path / "f.json"
    path.write_text("{}")
    os.chmod(path, bits)
    atomic_write_text(path, '{"a": 1}\n')
    assert path.read_text() == '{"a": 1}\n'
    assert mode(path) == bits


def test_side_file_is_no_wider_than_the_file_it_belongs_to(tmp_path, writer_path, umask_022):
    index = tmp_path / "index.faiss"
    index.write_bytes(b"x")
    os.chmod(index, 0o600)
    side = tmp_path / "index.faiss.originals.npy"
    atomic_write(side, lambda fh: fh.write(b"originals"), like=index)
    assert mode(side) == 0o600
    atomic_write_text(tmp_path / "index.faiss.ledger.json", "[]", like=index)
    assert mode(tmp_path / "index.faiss.ledger.json") == 0o600


def test_like_also_narrows_an_existing_side_file(tmp_path, writer_path, umask_022):
    index, side = tmp_path / "index.faiss", tmp_path / "index.originals"
    index.write_bytes(b"x")
    side.write_bytes(b"y")
    os.chmod(index, 0o600)
    os.chmod(side, 0o644)  # written before the user made the index private
    atomic_write(side, lambda fh: fh.write(b"z"), like=index)
    assert mode(side) == 0o600


def test_like_never_widens_beyond_the_umask(tmp_path, writer_path):
    index = tmp_path / "index.faiss"
    index.write_bytes(b"x")
    os.chmod(index, 0o644)
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "side", lambda fh: fh.write(b"y"), like=index)
    finally:
        os.umask(old)
    assert mode(tmp_path / "side") == 0o600


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o027, 0o002])
def test_new_file_without_like_follows_the_umask(tmp_path, writer_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "new.txt", "hello")
        assert files._umask() == umask  # read without changing it
    finally:
        os.umask(old)
    assert mode(tmp_path / "new.txt") == 0o666 & ~umask
    assert (tmp_path / "new.txt").read_text() == "hello"


def test_missing_like_is_ignored(tmp_path, writer_path, umask_022):
    atomic_write_text(tmp_path / "a", "x", like=tmp_path / "does-not-exist")
    assert mode(tmp_path / "a") == 0o644


def test_rewrite_keeps_owner_and_group(tmp_path, writer_path, umask_022):
    path = tmp_path / "f"
    path.write_text("a")
    before = os.stat(path)
    atomic_write_text(path, "b")
    after = os.stat(path)
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # replaced, not rewritten in place


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root may give a file away")
def test_root_rewrite_keeps_another_users_ownership(tmp_path, writer_path, umask_022):
    path = tmp_path / "f"
    path.write_text("a")
    os.chown(path, 12345, 23456)
    os.chmod(path, 0o640)
    atomic_write_text(path, "b")
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 23456, 0o640)


def test_failed_write_leaves_the_file_and_its_mode(tmp_path, writer_path, umask_022):
    path = tmp_path / "f"
    path.write_text("old")
    os.chmod(path, 0o600)

    def boom(fh):
        fh.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, boom)
    assert path.read_text() == "old" and mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_the_private_module_is_gone():
    """Issue 17 item 7: every user imports the public ``nudge_rag.files``; ``nudge_rag._files`` no longer exists."""
    import importlib

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("nudge_rag._files")


def test_file_mode_for_other_writers(tmp_path, umask_022):
    index = tmp_path / "index"
    index.write_bytes(b"x")
    os.chmod(index, 0o640)
    assert files.file_mode(tmp_path / "new") == 0o644
    assert files.file_mode(tmp_path / "new", like=index) == 0o640 & 0o644
    assert files.file_mode(index) == 0o640
    assert set(files.__all__) == {"atomic_write", "atomic_write_text", "file_mode", "glob_escape"}
