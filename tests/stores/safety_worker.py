"""A second nudge-rag process for the store-safety tests: ``python safety_worker.py COMMAND URI [ARGS]``.

* ``lock URI``: open the store, take its writer lock, print ``locked`` and hold it until killed;
* ``write URI NPZ BATCH DELAY``: write the patch in NPZ (``ids``, ``new``, ``old``) in batches of BATCH rows,
  sleeping DELAY s before each batch's write (so a ``kill -9`` lands mid-write), printing ``batch`` per batch;
* ``revert URI BATCH DELAY``: revert likewise.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from nudge_rag.stores import open_store


def _slow(store, delay: float) -> None:
    put = store._put

    def slow_put(ids, vectors):
        time.sleep(delay)
        put(ids, vectors)
        print("batch", flush=True)

    store._put = slow_put


def main(argv: list[str]) -> int:
    command, uri = argv[0], argv[1]
    store = open_store(uri)
    if command == "lock":
        with store.locked():
            print("locked", flush=True)
            time.sleep(600)
        return 0
    if command == "write":
        npz, batch, delay = argv[2], int(argv[3]), float(argv[4])
        with np.load(npz, allow_pickle=False) as z:
            ids, new, old = [str(i) for i in z["ids"]], z["new"], z["old"]
        store.batch_size = batch
        _slow(store, delay)
        print("started", flush=True)
        store.write(ids, new, expected=old)
        print("done", flush=True)
    elif command == "revert":
        batch, delay = int(argv[2]), float(argv[3])
        store.batch_size = batch
        _slow(store, delay)
        print("started", flush=True)
        store.revert()
        print("done", flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
