"""From files to a dataset ready for NUDGE: load the texts and judgements, obtain the vectors, build the splits.

Used by the ``nudge-rag`` command line, the benchmarks and the tests; fitting and reporting are in
:mod:`nudge_rag.finetune`. Every step raises :class:`~nudge_rag.data.DataError` (or ``ValueError`` /
``ImportError``) with a one-line message on bad input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data import (
    DataError,
    RetrievalDataset,
    Splits,
    find_beir,
    load_dataset,
    load_pairs,
    make_splits,
    precomputed_dir,
)
from .data._io import read_id_list, require_file
from .embedding import DEFAULT_MODEL, is_default_model
from .finetune import DEFAULT_VAL_FRACTION
from .queries import QueryAnswers

if TYPE_CHECKING:
    from .embedding import Embedder

__all__ = ["DataSource", "VectorSource", "Prepared", "load_source", "prepare", "document_and_query_vectors"]


@dataclass
class DataSource:
    """Where the texts and judgements come from (exactly one of dataset / data / pairs)."""

    dataset: str | None = None
    data: str | None = None
    corpus: str | None = None
    pairs: list[str] = field(default_factory=list)
    data_dir: str | None = None
    download: bool = True


@dataclass
class VectorSource:
    """Where the vectors come from: user files, precomputed vectors beside the data, or a model + cache."""

    doc_embeddings: str | None = None
    doc_ids: str | None = None
    query_embeddings: str | None = None
    query_ids: str | None = None
    model: str | None = None
    batch_size: int = 64
    cache_dir: str | None = None
    use_precomputed: bool = True


@dataclass
class Prepared:
    """A dataset ready for NUDGE: document matrix and train / val / test queries.

    ``docs`` is (N, d) float32, row i = ``dataset.doc_ids[i]``; ``test`` is None when the split has no test.
    ``seconds`` is the whole preparation; ``timings`` splits it: ``load_model`` (the embedding model),
    ``embed`` (texts to vectors, cache reads included) and ``vectors`` (everything that obtained the vectors).
    """

    dataset: RetrievalDataset
    splits: Splits
    docs: np.ndarray
    train: QueryAnswers
    val: QueryAnswers
    test: QueryAnswers | None
    vectors: str
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- loading
def _load_doc_vectors(path: str) -> tuple[Path, Path | None]:
    p = Path(path)
    if p.is_dir():  # a finetune output folder
        return require_file(p / "embeddings.npy", "embeddings file"), p / "doc_ids.txt"
    return require_file(p, "embeddings file"), None


def _read_matrix(path: Path, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read {what} as a .npy array ({exc})") from None
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.dtype.kind != "f":
        raise DataError(f"{path}: {what} must be a non-empty 2-D float array, got shape {arr.shape} dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: {what} contain NaN or inf")
    return arr.astype(np.float32, copy=False)


def _user_doc_ids(vs: VectorSource) -> list[str] | None:
    if vs.doc_embeddings is None:
        if vs.doc_ids is not None:
            raise DataError("--doc-ids needs --doc-embeddings")
        return None
    _, default_ids = _load_doc_vectors(vs.doc_embeddings)
    ids_path = vs.doc_ids or default_ids
    if ids_path is None:
        raise DataError(f"--doc-embeddings {vs.doc_embeddings} needs --doc-ids (a text file with one id per row)")
    return read_id_list(ids_path)


def load_source(
    src: DataSource, vs: VectorSource | None = None, *, default_dataset: str | None = None
) -> RetrievalDataset:
    """Load the dataset named by ``src`` (a named BEIR set, a folder, or corpus + pairs files).

    ``default_dataset`` is the BEIR set used when ``src`` names none (otherwise that is an error).
    """
    given = [x for x in (src.dataset, src.data, src.pairs or None) if x]
    if len(given) > 1:
        raise DataError("give only one of --dataset, --data or --pairs")
    if src.corpus and not src.pairs:
        raise DataError("--corpus needs --pairs")
    if src.pairs:
        doc_ids = _user_doc_ids(vs) if (vs is not None and src.corpus is None) else None
        if src.corpus is None and doc_ids is None:
            raise DataError("--pairs needs --corpus (or --doc-embeddings with --doc-ids)")
        return load_pairs(src.pairs if len(src.pairs) > 1 else src.pairs[0], src.corpus, doc_ids=doc_ids)
    if src.data:
        return load_dataset(src.data)
    name = src.dataset or default_dataset
    if name is None:
        raise DataError("no data given: pass --dataset NAME, --data DIR or --pairs FILE (with --corpus)")
    return load_dataset(find_beir(name, src.data_dir, download=src.download), name=name)


# ---------------------------------------------------------------------------------------------- vectors
def _precomputed(ds: RetrievalDataset, vs: VectorSource) -> tuple[np.ndarray, np.ndarray, Path] | None:
    """Precomputed default-model vectors beside a BEIR folder, when present and their row counts match.

    Layout: ``<root>/embeddings/all-MiniLM-L6-v2/<name>/{corpus,queries}.npy`` for ``<root>/beir/<name>``;
    row i is line i of the corpus / queries file.
    """
    if not vs.use_precomputed or not is_default_model(vs.model) or ds.source is None or "queries" not in ds.files:
        return None
    folder = precomputed_dir(ds.source, DEFAULT_MODEL)
    corpus, queries = folder / "corpus.npy", folder / "queries.npy"
    if not (corpus.is_file() and queries.is_file()):
        return None
    try:
        docs = np.load(corpus, mmap_mode="r", allow_pickle=False)
        qs = np.load(queries, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder}: cannot read the precomputed vectors ({exc}); pass --no-precomputed") from None
    if docs.ndim != 2 or qs.ndim != 2 or docs.shape[1] != qs.shape[1]:
        return None
    if docs.shape[0] != len(ds.doc_ids) or qs.shape[0] != len(ds.query_ids):
        raise _Mismatch(
            f"precomputed vectors in {folder} skipped: {docs.shape[0]} x {qs.shape[0]} rows for "
            f"{len(ds.doc_ids)} documents x {len(ds.query_ids)} queries"
        )
    return np.asarray(docs, dtype=np.float32), np.asarray(qs, dtype=np.float32), folder


class _Mismatch(Exception):
    """Precomputed vectors exist but do not fit the files (message says how)."""


def _embedder(vs: VectorSource) -> Embedder:
    from .embedding import Embedder

    return Embedder(vs.model, batch_size=vs.batch_size, cache_dir=vs.cache_dir)


def _align(ids: list[str], vectors: np.ndarray, wanted: list[str], what: str, path: object) -> np.ndarray:
    if len(ids) != vectors.shape[0]:
        raise DataError(f"{path}: {vectors.shape[0]} {what} vectors but {len(ids)} ids")
    pos = {v: i for i, v in enumerate(ids)}
    if len(pos) != len(ids):
        raise DataError(f"the {what} id list for {path} holds duplicate ids")
    missing = [w for w in wanted if w not in pos]
    if missing:
        raise DataError(f"{path}: no vector for {len(missing)} {what} id(s) (first: {missing[0]!r})")
    return vectors[[pos[w] for w in wanted]]


def document_and_query_vectors(
    ds: RetrievalDataset, query_ids: list[str], vs: VectorSource, *, timings: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(N, d) document vectors in corpus order, (len(query_ids), d) query vectors, and a description.

    Each side comes from the user's files when given, else from precomputed vectors of the default model
    beside the data (when their row counts match), else from the model (through the embedding cache).
    ``timings``, when given, receives the seconds spent loading the model and embedding (``load_model``,
    ``embed``).
    """
    spent = timings if timings is not None else {}
    spent.setdefault("load_model", 0.0)
    spent.setdefault("embed", 0.0)

    def encode(embedder: Embedder, texts: list[str]) -> np.ndarray:
        out = embedder.encode(texts)
        for k, v in embedder.last_seconds.items():
            spent[k] = spent.get(k, 0.0) + v
        return out

    described = []
    try:
        pre = _precomputed(ds, vs)
    except _Mismatch as exc:
        pre = None
        described.append(str(exc))
    embedder = None
    if vs.doc_embeddings:
        path, _ = _load_doc_vectors(vs.doc_embeddings)
        ids = _user_doc_ids(vs)
        assert ids is not None  # --doc-embeddings is set, so ids were read (or an error raised)
        docs = _align(ids, _read_matrix(path, "document embeddings"), ds.doc_ids, "document", path)
        if len(ids) != len(ds.doc_ids):
            known = set(ds.doc_ids)
            extra = next(i for i in ids if i not in known)
            raise DataError(f"{path}: document id {extra!r} is not in the corpus")
        described.append(f"documents from {path}")
    elif pre is not None:
        docs = pre[0]
        described.append(f"documents: precomputed all-MiniLM-L6-v2 ({pre[2]})")
    else:
        if ds.doc_texts is None:
            raise DataError("the documents have no text; pass --doc-embeddings and --doc-ids")
        embedder = _embedder(vs)
        docs = encode(embedder, ds.doc_texts)
        described.append(f"documents embedded with {embedder.name}" + (" (cached)" if embedder.last_cache_hit else ""))
    if vs.query_embeddings:
        if not vs.query_ids:
            raise DataError("--query-embeddings needs --query-ids (a text file with one id per row)")
        path = require_file(vs.query_embeddings, "query embeddings file")
        qs = _align(read_id_list(vs.query_ids), _read_matrix(path, "query embeddings"), query_ids, "query", path)
        described.append(f"queries from {path}")
    elif pre is not None:
        qpos = {q: i for i, q in enumerate(ds.query_ids)}
        qs = pre[1][[qpos[q] for q in query_ids]]
        described.append(
            "queries: precomputed"
            if described[-1].startswith("documents: pre")
            else f"queries: precomputed all-MiniLM-L6-v2 ({pre[2]})"
        )
    else:
        texts = ds.texts_of_queries(query_ids)
        if texts is None:
            raise DataError("the queries have no text; pass --query-embeddings and --query-ids")
        embedder = embedder or _embedder(vs)
        qs = encode(embedder, texts)
        described.append(f"queries embedded with {embedder.name}" + (" (cached)" if embedder.last_cache_hit else ""))
    if qs.shape[1] != docs.shape[1]:
        raise DataError(f"query vectors have dimension {qs.shape[1]} but document vectors have {docs.shape[1]}")
    return docs, qs, "; ".join(described)


# ---------------------------------------------------------------------------------------------- splits
def _answers(ds: RetrievalDataset, splits: Splits, role: str, q_vecs: dict[str, int], qs: np.ndarray) -> QueryAnswers:
    ids = splits.queries(role)
    if not ids:
        raise DataError(f"{ds.name}: the {role} split is empty")
    return QueryAnswers.from_pairs(qs[[q_vecs[q] for q in ids]], ids, getattr(splits, role), ds.doc_ids)


def prepare(
    ds: RetrievalDataset,
    vs: VectorSource,
    *,
    policy: str = "auto",
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    need_test: bool = False,
) -> Prepared:
    """Split ``ds``, obtain its vectors and build the train / val / test :class:`QueryAnswers`."""
    t0 = time.perf_counter()
    splits = make_splits(ds, policy, seed=seed, val_fraction=val_fraction, need_test=need_test)
    used = list(dict.fromkeys(splits.queries("train") + splits.queries("val") + splits.queries("test")))
    timings: dict[str, float] = {}
    t1 = time.perf_counter()
    docs, qs, described = document_and_query_vectors(ds, used, vs, timings=timings)
    timings["vectors"] = time.perf_counter() - t1
    row = {q: i for i, q in enumerate(used)}
    train = _answers(ds, splits, "train", row, qs)
    val = _answers(ds, splits, "val", row, qs)
    test = _answers(ds, splits, "test", row, qs) if splits.test else None
    return Prepared(ds, splits, docs, train, val, test, described, time.perf_counter() - t0, timings)
