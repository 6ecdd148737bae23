"""Which Dask cluster runs the work: a given client, a scheduler address, the active client, or a LocalCluster."""

from __future__ import annotations

import atexit
import threading
from typing import Any

from ._deps import require

__all__ = ["resolve_client", "compute"]

_LOCAL: dict[str, Any] = {}
_LOCK = threading.Lock()


def resolve_client(client: object = None) -> Any:
    """A ``distributed.Client``.

    ``client`` may be a Client (used as is), a scheduler address such as ``"tcp://10.0.0.5:8786"`` (connected
    to), or None: the active client if there is one, else a ``LocalCluster`` started once per process (closed at
    exit) with one worker process per core.
    """
    distributed = require("distributed")
    if isinstance(client, distributed.Client):
        return client
    if isinstance(client, str):
        if not client.strip():
            raise ValueError("scheduler address is empty")
        return distributed.Client(client)
    if client is not None:
        raise TypeError(
            f"client must be a distributed.Client, a scheduler address or None, got {type(client).__name__}"
        )
    try:
        return distributed.default_client()
    except ValueError:  # no active client: start (once) a local cluster
        pass
    with _LOCK:
        if "client" not in _LOCAL or _LOCAL["client"].status in ("closed", "closing"):
            cluster = distributed.LocalCluster(processes=True, threads_per_worker=1, dashboard_address=":0")
            _LOCAL["cluster"] = cluster
            _LOCAL["client"] = distributed.Client(cluster, set_as_default=False)
            atexit.register(_close_local)
        return _LOCAL["client"]


def compute(client: Any, obj: object, *, progress: bool = False) -> Any:
    """Compute a Dask collection or Delayed on ``client`` and return its value (a progress bar if asked)."""
    future = client.compute(obj)
    if progress:
        require("distributed").progress(future)
    return future.result()


def _close_local() -> None:
    client, cluster = _LOCAL.pop("client", None), _LOCAL.pop("cluster", None)
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()
