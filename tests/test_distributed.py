"""Corpora on disk and on a real Dask LocalCluster (two worker processes): fits equal the in-memory fit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from nudge_rag import NudgeM, NudgeN, load
from nudge_rag._checks import normalize_rows
from nudge_rag.search import static_topk
from nudge_rag.synthetic import make_synthetic

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from nudge_rag.distributed import (  # noqa: E402
    DaskCorpus,
    nudged_array,
    open_corpus,
    patched_chunks,
    write_back,
    write_npy_shards,
)

pytestmark = pytest.mark.integration


def _cluster(**kw):
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", **kw)


@pytest.fixture(scope="module")
def client():
    with _cluster() as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def synth():
    """50k clustered documents (32-d) with non-unit norms, 3000 training and 700 validation queries."""
    s = make_synthetic(50_000, 3000, 700, 10, dim=32, seed=3)
    scale = np.random.default_rng(0).uniform(0.5, 3.0, (50_000, 1)).astype(np.float32)
    return s.documents * scale, s.train, s.val


def _unit(x):
    return x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True).astype(np.float32)


def _assert_same_fit(got, ref):
    assert got.gamma_ == ref.gamma_
    np.testing.assert_array_equal(got.gammas_, ref.gammas_)
    np.testing.assert_array_equal(got.val_scores_, ref.val_scores_)
    np.testing.assert_array_equal(got.patch_.rows, ref.patch_.rows)
    np.testing.assert_allclose(got.patch_.new, ref.patch_.new, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got.patch_.old, ref.patch_.old, atol=1e-6, rtol=0)
    assert got.embeddings_ is None and got.corpus_ is not None


def _write_shards(folder, x, size):
    folder.mkdir(parents=True, exist_ok=True)
    for j, a in enumerate(range(0, x.shape[0], size)):
        np.save(folder / f"shard-{j:03d}.npy", x[a : a + size])
    return folder


# ---------------------------------------------------------------------------------------------- the scan
@pytest.mark.parametrize("chunk", [997, 7919, 23_000, 50_000])
def test_competitors_equal_static_topk_for_any_chunking(client, synth, chunk):
    x, _, val = synth
    unit = normalize_rows(x, "x")  # what the in-memory fit scans
    exclude = np.unique(np.random.default_rng(1).integers(0, x.shape[0], 4000))
    want_s, want_i = static_topk(val.embeddings, unit, exclude, 5)
    got_s, got_i = DaskCorpus(da.from_array(x, chunks=(chunk, -1)), client).competitors(val.embeddings, exclude, 5)
    np.testing.assert_array_equal(got_s, want_s)  # bit-identical float32 scores
    np.testing.assert_array_equal(got_i, want_i)
    assert not np.isin(got_i, exclude).any()


def test_exact_ties_go_to_the_smaller_row_across_chunks(client):
    rng = np.random.default_rng(2)
    distinct = rng.standard_normal((7, 16)).astype(np.float32)
    x = distinct[np.arange(40_000) % 7]  # every score is tied with thousands of others
    queries = distinct[:3] + 0.01 * rng.standard_normal((3, 16)).astype(np.float32)
    exclude = np.arange(0, 40_000, 3, dtype=np.int64)
    want = static_topk(queries, normalize_rows(x, "x"), exclude, 6)
    got = DaskCorpus(da.from_array(x, chunks=(7919, -1)), client).competitors(queries, exclude, 6)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    best = np.flatnonzero((np.arange(40_000) % 7 == 0) & (np.arange(40_000) % 3 != 0))[:6]
    np.testing.assert_array_equal(got[1][0], best)  # the smallest rows among the tied best


def test_fetch_reads_unit_rows_in_the_order_asked(client, synth):
    x = synth[0]
    corpus = DaskCorpus(da.from_array(x, chunks=(7919, -1)), client)
    rows = np.array([49_999, 3, 3, 16_384, 0])
    np.testing.assert_array_equal(corpus.fetch(rows), NudgeN()._open_corpus(x, None)[1][rows])
    with pytest.raises(IndexError, match="row 50000 is out of range"):
        corpus.fetch(np.array([50_000]))


def test_dask_corpus_rejects_bad_arrays():
    with pytest.raises(TypeError, match="dask.array.Array, got ndarray"):
        DaskCorpus(np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match="dtype float32 or float64, got int64"):
        DaskCorpus(da.zeros((3, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="must be 2-D"):
        DaskCorpus(da.zeros(3, dtype=np.float32))


def test_nonfinite_row_is_reported_with_its_global_row(client, synth):
    x = synth[0].copy()
    x[30_001, 4] = np.nan
    corpus = DaskCorpus(da.from_array(x, chunks=(7919, -1)), client)
    with pytest.raises(ValueError, match="NaN or inf at row 30001"):
        corpus.competitors(synth[2].embeddings, np.zeros(0, np.int64), 1)


# ---------------------------------------------------------------------------------------------- fits
@pytest.mark.parametrize("est", [NudgeN, NudgeM])
@pytest.mark.parametrize("chunk", [7919, 23_000])
def test_fit_on_dask_array_equals_in_memory_fit(client, synth, est, chunk):
    x, train, val = synth
    ref = est().fit(x, train, val)
    assert ref.gamma_ > 0 and ref.n_moved_ > 1000
    got = est().fit(DaskCorpus(da.from_array(x, chunks=(chunk, -1)), client), train, val)
    _assert_same_fit(got, ref)
    # chunks do not align with the moved documents, yet the lazy nudged array is the in-memory result
    assert len(patched_chunks(got.corpus_.array, got.patch_)) == got.corpus_.array.numblocks[0]
    np.testing.assert_allclose(nudged_array(got.corpus_.array, got.patch_).compute(), ref.embeddings_, atol=1e-6)


@pytest.mark.parametrize("est", [NudgeN, NudgeM])
def test_fit_on_scifact_shards_equals_in_memory_fit(client, scifact, tmp_path, est):
    docs, train, val, _ = scifact
    corpus = open_corpus(_write_shards(tmp_path / "shards", docs, 1000), client=client)
    assert corpus.source.kind == "npy" and corpus.array.numblocks[0] == 6
    ref = est().fit(docs, train, val)
    got = est().fit(corpus, train, val)
    _assert_same_fit(got, ref)
    assert ref.n_moved_ > 0


def test_dask_array_goes_through_as_corpus(client, synth):
    x, train, val = synth
    arr = da.from_array(x, chunks=(23_000, -1))
    with distributed.Client(client.scheduler.address) as c2:  # an active client: used by the fit
        c2.as_current()
        got = NudgeN().fit(arr, train, val)
    _assert_same_fit(got, NudgeN().fit(x, train, val))
    assert isinstance(got.corpus_, DaskCorpus)


def test_dask_arrays_reach_fit_through_the_registration_of_the_distributed_package():
    """The core never names Dask: importing nudge_rag.distributed registers the adapter (issue 17, item 2)."""
    code = (
        "import dask.array as da\n"
        "from nudge_rag.corpus import as_corpus\n"
        "a = da.ones((3, 2), dtype='float32', chunks=(2, -1))\n"
        "try:\n"
        "    as_corpus(a)\n"
        "except TypeError as e:\n"
        "    print('refused:', 'nudge_rag.distributed' in str(e))\n"
        "import nudge_rag.distributed\n"
        "print(type(as_corpus(a)).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["refused: True", "DaskCorpus"]


# ---------------------------------------------------------------------------------------------- fault tolerance
def test_worker_killed_mid_fit_is_retried_and_the_result_is_unchanged(synth):
    x, train, val = synth
    rng = np.random.default_rng(5)
    big_val = type(val).from_lists(  # more validation queries: a scan long enough to kill a worker in
        _unit(np.repeat(val.embeddings, 6, axis=0) + 0.05 * rng.standard_normal((4200, 32)).astype(np.float32)),
        np.repeat(val.indices, 6)[:, None].tolist(),
    )
    ref = NudgeN().fit(x, train, big_val)
    with _cluster() as cluster, distributed.Client(cluster) as c:
        pids = c.run(os.getpid)
        killed: dict = {}

        def kill_when_scanning():
            deadline = time.time() + 60
            while time.time() < deadline and not killed:
                for addr, keys in c.processing().items():
                    if any("_chunk_topk" in str(k) for k in keys):
                        killed.update(addr=addr, pid=pids[addr], at=time.time())
                        os.kill(pids[addr], signal.SIGKILL)
                        return
                time.sleep(0.005)

        corpus = DaskCorpus(da.from_array(x, chunks=(2500, -1)), c)
        corpus.fetch(np.array([0]))  # warm the graph machinery so the thread sees the scan
        killer = threading.Thread(target=kill_when_scanning)
        killer.start()
        got = NudgeN().fit(corpus, train, big_val)
        done = time.time()
        killer.join()
        assert killed, "no scan task was seen running"
        assert killed["at"] < done
        c.wait_for_workers(2, timeout=60)
        assert killed["pid"] not in set(c.run(os.getpid).values())  # the nanny restarted the killed worker
    _assert_same_fit(got, ref)


# ---------------------------------------------------------------------------------------------- write-back
def test_write_back_in_place_rewrites_only_shards_with_moved_rows(client, scifact, tmp_path):
    docs, train, val, _ = scifact
    trained = np.unique(train.indices)
    gap = int(np.argmax(np.diff(trained)))  # shard 1 = the widest run of untrained documents
    cuts = [0, int(trained[gap]) + 1, int(trained[gap + 1]), 2600, docs.shape[0]]
    cuts = sorted(set(cuts))
    folder = tmp_path / "shards"
    folder.mkdir()
    for j, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        np.save(folder / f"shard-{j:03d}.npy", docs[a:b])
    corpus = open_corpus(folder, client=client)
    model = NudgeN().fit(corpus, train, val)
    rows = model.patch_.rows
    n_shards = corpus.array.numblocks[0]
    keep = set(range(n_shards)) - set(patched_chunks(corpus.array, model.patch_).tolist())
    assert cuts.index(int(trained[gap]) + 1) in keep and len(keep) < n_shards
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.glob("*.npy"))}
    written = write_back(corpus, model.patch_)
    assert sorted(p.name for p in written) == sorted(f"shard-{c:03d}.npy" for c in set(range(n_shards)) - keep)
    for c in keep:
        name = f"shard-{c:03d}.npy"
        assert (folder / name).stat().st_mtime_ns == before[name][0]
        assert (folder / name).read_bytes() == before[name][1]
    back = np.concatenate([np.load(p) for p in sorted(folder.glob("*.npy"))])
    assert not list(folder.glob(".*.tmp"))
    want = docs.copy()
    want[rows] = model.patch_.new
    np.testing.assert_array_equal(back, want)
    np.testing.assert_allclose(model.patch_.revert(back)[rows], _unit(docs[rows]), atol=1e-6)


def test_write_back_to_a_new_folder_normalised_equals_in_memory_embeddings(client, synth, tmp_path):
    x, train, val = synth
    folder = _write_shards(tmp_path / "in", x, 9000)
    corpus = open_corpus(folder, client=client)
    model = NudgeM().fit(corpus, train, val)
    written = write_back(corpus, model.patch_, tmp_path / "out", normalize=True)
    assert [p.name for p in written] == [p.name for p in sorted(folder.glob("*.npy"))]
    assert [np.load(p).shape[0] for p in written] == [9000] * 5 + [5000]  # same layout as the input
    back = open_corpus(tmp_path / "out", client=client).array.compute()
    np.testing.assert_allclose(back, NudgeM().fit(x, train, val).embeddings_, atol=1e-6)


def test_write_npy_shards_of_any_corpus_and_bad_source(client, synth, tmp_path):
    x = synth[0][:20_000]
    arr = da.from_array(x, chunks=(6000, -1))
    paths = write_npy_shards(arr, tmp_path, client=client)
    assert [p.name for p in paths] == [f"part-{c:05d}.npy" for c in range(4)]
    np.testing.assert_array_equal(np.concatenate([np.load(p) for p in paths]), x)
    from nudge_rag.patch import Patch

    empty = Patch(np.zeros(0, np.int64), np.zeros((0, 32), np.float32), np.zeros((0, 32), np.float32))
    with pytest.raises(ValueError, match="needs a corpus opened from files"):
        write_back(DaskCorpus(arr, client), empty)


# ---------------------------------------------------------------------------------------------- openers
def test_openers_npy_zarr_parquet_give_the_same_fit(client, scifact, tmp_path):
    zarr = pytest.importorskip("zarr")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    docs, train, val, _ = scifact
    z = zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=docs.shape, chunks=(700, 128), dtype="f4")
    z[:] = docs
    (tmp_path / "pq").mkdir()
    for j, a in enumerate(range(0, docs.shape[0], 2000)):
        vec = pa.FixedSizeListArray.from_arrays(pa.array(docs[a : a + 2000].ravel()), docs.shape[1])
        table = pa.table({"id": np.arange(a, a + vec.__len__()), "vec": vec})
        pq.write_table(table, tmp_path / "pq" / f"part-{j}.parquet")
    ref = NudgeN().fit(docs, train, val)
    opened = {
        "npy": open_corpus(_write_shards(tmp_path / "npy", docs, 1500), client=client),
        "zarr": open_corpus(tmp_path / "v.zarr", client=client),
        "parquet": open_corpus(tmp_path / "pq", column="vec", client=client),
    }
    for kind, corpus in opened.items():
        assert corpus.source.kind == kind and (corpus.n_docs, corpus.dim) == docs.shape
        assert len(corpus.array.chunks[1]) == 1
        np.testing.assert_array_equal(corpus.array[1234:1240].compute(), docs[1234:1240])
        _assert_same_fit(NudgeN().fit(corpus, train, val), ref)
    with pytest.raises(ValueError, match="no column 'embedding'"):
        open_corpus(tmp_path / "pq", client=client)
    with pytest.raises(FileNotFoundError):
        open_corpus(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------- insert
@pytest.mark.parametrize("est", [NudgeN, NudgeM])
def test_insert_on_a_corpus_fit_equals_insert_on_an_array_fit(client, synth, est):
    x, train, val = synth
    s2 = make_synthetic(4000, 800, 200, 10, dim=32, seed=9)  # new documents, asked about by new pairs
    shift = x.shape[0]
    new_train = type(train).from_lists(s2.train.embeddings, (s2.train.indices + shift)[:, None].tolist())
    more_train = type(train).from_lists(train.embeddings[:300], train.indices[:300, None].tolist())
    new_val = type(val).from_lists(s2.val.embeddings, (s2.val.indices + shift)[:, None].tolist())
    ref = est().fit(x[:, :], train, val).insert(s2.documents, new_train, new_val).insert(None, more_train)
    corpus = DaskCorpus(da.from_array(x, chunks=(23_000, -1)), client)
    got = est().fit(corpus, train, val).insert(s2.documents, new_train, new_val).insert(None, more_train)
    _assert_same_fit(got, ref)
    assert got.corpus_.n_docs == shift + 4000 and got.corpus_.array.numblocks[0] == 4  # new docs: a new chunk
    np.testing.assert_allclose(nudged_array(got.corpus_.array, got.patch_).compute(), ref.embeddings_, atol=1e-6)


# ---------------------------------------------------------------------------------------------- imports
def test_importing_nudge_rag_distributed_needs_numpy_only():
    code = (
        "import sys, nudge_rag, nudge_rag.distributed, nudge_rag.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'zarr', 'pyarrow'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------- command line
def test_cli_finetune_engine_dask_equals_memory_engine(client, tmp_path, capsys):
    import json

    from nudge_rag.cli import main

    s = make_synthetic(20_000, 1500, 300, 10, dim=32, seed=11)
    shards = _write_shards(tmp_path / "shards", s.documents, 7000)
    np.save(tmp_path / "docs.npy", s.documents)
    (tmp_path / "doc_ids.txt").write_text("".join(f"d{i}\n" for i in range(20_000)))
    qs = np.concatenate([s.train.embeddings, s.val.embeddings])
    np.save(tmp_path / "q.npy", qs)
    (tmp_path / "q_ids.txt").write_text("".join(f"q{i}\n" for i in range(qs.shape[0])))
    with open(tmp_path / "pairs.jsonl", "w") as fh:
        for i, a in enumerate(np.concatenate([s.train.indices, s.val.indices])):
            split = "train" if i < len(s.train) else "dev"
            fh.write(json.dumps({"query_id": f"q{i}", "doc_id": f"d{a}", "split": split}) + "\n")
    common = [
        "--pairs",
        str(tmp_path / "pairs.jsonl"),
        "--doc-ids",
        str(tmp_path / "doc_ids.txt"),
        "--query-embeddings",
        str(tmp_path / "q.npy"),
        "--query-ids",
        str(tmp_path / "q_ids.txt"),
    ]
    rc = main(
        [
            "finetune",
            "--engine",
            "dask",
            "--corpus",
            str(shards),
            "--scheduler",
            client.scheduler.address,
            "--out",
            str(tmp_path / "out_dask"),
            *common,
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "dashboard" in printed and "documents moved" in printed
    rc = main(["finetune", "--doc-embeddings", str(tmp_path / "docs.npy"), "--out", str(tmp_path / "out_mem"), *common])
    assert rc == 0
    dask_rep = json.loads((tmp_path / "out_dask" / "report.json").read_text())
    mem_rep = json.loads((tmp_path / "out_mem" / "report.json").read_text())
    assert dask_rep["engine"] == "dask" and dask_rep["gamma"] == mem_rep["gamma"] > 0
    assert dask_rep["n_moved"] == mem_rep["n_moved"] and dask_rep["val_scores"] == mem_rep["val_scores"]
    out = sorted((tmp_path / "out_dask" / "embeddings").glob("*.npy"))
    assert [p.name for p in out] == ["shard-000.npy", "shard-001.npy", "shard-002.npy"]
    np.testing.assert_allclose(
        np.concatenate([np.load(p) for p in out]), np.load(tmp_path / "out_mem" / "embeddings.npy"), atol=1e-6
    )
    patch = np.load(tmp_path / "out_dask" / "patch.npz")
    assert patch["rows"].size == dask_rep["n_moved"]
    saved = load(tmp_path / "out_dask" / "model.npz")  # the same model file as the memory engine's, without N x d
    mem_model = load(tmp_path / "out_mem" / "model.npz")
    assert saved.gamma_ == mem_model.gamma_ and saved.embeddings_ is None
    np.testing.assert_allclose(saved.patch_.new, mem_model.patch_.new, atol=1e-6)
    assert (tmp_path / "out_dask" / "doc_ids.txt").read_text() == (tmp_path / "doc_ids.txt").read_text()


def test_write_back_parquet_and_zarr_in_place(client, scifact, tmp_path):
    zarr = pytest.importorskip("zarr")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    docs, train, val, _ = scifact
    (tmp_path / "pq").mkdir()
    for j, a in enumerate(range(0, docs.shape[0], 2000)):
        vec = pa.array(docs[a : a + 2000].tolist(), type=pa.list_(pa.float32()))
        pq.write_table(
            pa.table({"id": [f"d{i}" for i in range(a, a + len(vec))], "embedding": vec}),
            tmp_path / "pq" / f"part-{j}.parquet",
        )
    z = zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=docs.shape, chunks=(1000, 384), dtype="f4")
    z[:] = docs
    for path in (tmp_path / "pq", tmp_path / "v.zarr"):
        corpus = open_corpus(path, client=client)
        model = NudgeM().fit(corpus, train, val)
        write_back(corpus, model.patch_)
        back = open_corpus(path, client=client).array.compute()
        want = docs.copy()
        want[model.patch_.rows] = model.patch_.new
        np.testing.assert_array_equal(back, want)
    table = pq.read_table(tmp_path / "pq" / "part-1.parquet")
    assert table.column("id")[0].as_py() == "d2000" and table.schema.field("embedding").type == pa.list_(pa.float32())
    assert not list((tmp_path / "pq").glob(".*.tmp"))
