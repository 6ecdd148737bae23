"""Find a named BEIR dataset on disk, downloading it from BEIR's public archive when it is missing."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from .beir import is_beir_dir
from .errors import MissingDataError
from .locate import data_roots, dataset_dir

__all__ = ["BEIR_URL", "ENV_OFFLINE", "OFFLINE_VARIABLES", "find_beir", "download_beir", "downloads_disabled"]

#: Public archive of the BEIR datasets (one zip per dataset).
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
#: Set to 1 to never attempt a download.
ENV_OFFLINE = "NUDGE_RAG_OFFLINE"
#: Any of these set to a true value (1, true, yes, on) turns downloads off: ours and the Hugging Face ones.
OFFLINE_VARIABLES = (ENV_OFFLINE, "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def downloads_disabled() -> str | None:
    """The name of the offline variable that forbids downloading, or None when downloads are allowed."""
    for var in OFFLINE_VARIABLES:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"invalid dataset name {name!r} (expected lower-case letters, digits, '-', '_', '.')")
    return name


def find_beir(
    name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True, timeout: float = 60.0
) -> Path:
    """Folder of BEIR dataset ``name`` under the first data root that has it (see :mod:`.locate`).

    When no root has it, downloads it into the last root (unless ``download`` is False or one of
    :data:`OFFLINE_VARIABLES`, e.g. ``HF_HUB_OFFLINE=1``, is set). Raises :class:`MissingDataError` naming where
    to place the files; a failed download leaves nothing behind (no partial or empty folders).
    """
    _check_name(name)
    roots = data_roots(data_dir)
    for root in roots:
        if is_beir_dir(dataset_dir(root, name)):
            return dataset_dir(root, name)
    target = dataset_dir(roots[-1], name)
    looked = ", ".join(str(dataset_dir(r, name)) for r in roots)
    hint = (
        f"place the BEIR files at {target}/corpus.jsonl, {target}/queries.jsonl and {target}/qrels/test.tsv "
        f"(or pass --data-dir / set NUDGE_RAG_DATA_DIR)"
    )
    offline = downloads_disabled()
    if not download or offline:
        why = f"downloads are off ({offline}=1)" if offline else "downloads are off"
        raise MissingDataError(f"dataset {name!r} not found (looked in {looked}) and {why}; {hint}")
    try:
        return download_beir(name, target, timeout=timeout)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise MissingDataError(
            f"dataset {name!r} not found (looked in {looked}) and the download from {BEIR_URL.format(name=name)} "
            f"failed ({reason}); {hint}"
        ) from None


def download_beir(name: str, target: str | os.PathLike, *, url: str | None = None, timeout: float = 60.0) -> Path:
    """Download and unpack ``<name>.zip`` into ``target`` (atomically: unpacked beside it, then renamed).

    On failure, the folders created for it are removed again.
    """
    _check_name(name)
    target = Path(target)
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _download(name, target, url or BEIR_URL.format(name=name), timeout)
    except BaseException:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _download(name: str, target: Path, url: str, timeout: float) -> Path:
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=target.parent) as tmp:
        archive = Path(tmp) / f"{name}.zip"
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(archive, "wb") as out:
            shutil.copyfileobj(resp, out, length=1 << 20)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                p = Path(member)
                if p.is_absolute() or ".." in p.parts:
                    raise ValueError(f"unsafe path {member!r} in {url}")
            zf.extractall(unpacked)
        found = [p.parent for p in unpacked.rglob("queries.jsonl") if is_beir_dir(p.parent)]
        if not found:
            raise ValueError(f"{url} holds no BEIR dataset (corpus.jsonl, queries.jsonl, qrels/)")
        if target.exists():
            shutil.rmtree(target)
        os.replace(found[0], target)
    return target
