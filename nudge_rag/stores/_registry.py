"""Store URIs and the one registry mapping a URI scheme to its backend class (imported lazily).

Adding a backend is one module with a class that has ``from_uri(StoreURI)`` plus one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["StoreURI", "BACKENDS", "parse_uri", "open_store", "backend_class"]

#: URI scheme -> "module:Class" (module relative to ``nudge_rag.stores``).
BACKENDS: dict[str, str] = {
    "postgresql": "pgvector:PgVectorStore",
    "postgres": "pgvector:PgVectorStore",
    "qdrant": "qdrant:QdrantStore",
    "chroma": "chroma:ChromaStore",
    "milvus": "milvus:MilvusStore",
    "lancedb": "lancedb:LanceDBStore",
    "faiss": "faiss:FaissStore",
}


@dataclass(frozen=True)
class StoreURI:
    """A parsed store URI: ``scheme://[user[:password]@]host[:port]/path?key=value&...``.

    ``path`` is the local path for file-based stores (``qdrant:///data/q`` -> ``/data/q``; a relative path is
    written ``qdrant://./data/q`` or ``qdrant:data/q``); ``host`` is empty for local stores.
    """

    raw: str
    scheme: str
    host: str
    port: int | None
    path: str
    username: str | None
    password: str | None
    params: dict[str, str] = field(default_factory=dict)

    def param(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        """A query parameter; ``required`` raises ``ValueError`` naming the URI when it is missing."""
        value = self.params.get(name, default)
        if required and not value:
            raise ValueError(f"store URI {self.redacted()!r} needs ?{name}=...")
        return value

    def redacted(self) -> str:
        """The URI with any password replaced by ``***``."""
        if self.password:
            return self.raw.replace(f":{self.password}@", ":***@")
        return self.raw

    @property
    def is_local(self) -> bool:
        """True for a path on this machine (no host), False for a server address."""
        return not self.host or self.host == "."


def parse_uri(uri: str) -> StoreURI:
    """Split ``uri`` into a :class:`StoreURI`; an unknown scheme raises ``ValueError`` listing the known ones."""
    if not isinstance(uri, str) or "://" not in uri and ":" not in uri:
        raise ValueError(f"a store URI looks like qdrant:///path?collection=C, got {uri!r}")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower().split("+")[0]
    if scheme not in BACKENDS:
        raise ValueError(f"unknown store scheme {parts.scheme!r} in {uri!r}; known: {', '.join(sorted(BACKENDS))}")
    host = parts.hostname or ""
    path = unquote(parts.path)
    if parts.netloc == ".":  # qdrant://./relative/path
        host, path = "", "." + path
    elif not parts.netloc and path and not path.startswith("/"):  # qdrant:relative/path
        host = ""
    params = dict(parse_qsl(parts.query, keep_blank_values=False))
    return StoreURI(uri, scheme, host, parts.port, path, parts.username, parts.password, params)


def backend_class(scheme: str) -> Any:
    """The backend class registered for ``scheme`` (its module imported now)."""
    try:
        target = BACKENDS[scheme]
    except KeyError:
        raise ValueError(f"unknown store scheme {scheme!r}; known: {', '.join(sorted(BACKENDS))}") from None
    module, name = target.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def open_store(uri: str, **options: Any) -> Any:
    """Open the store named by ``uri`` (see :class:`StoreURI`); ``options`` go to the backend's ``from_uri``.

    Examples: ``postgresql://user@host:5432/db?table=docs``, ``qdrant:///data/qdrant?collection=docs``,
    ``qdrant://localhost:6333?collection=docs``, ``chroma:///data/chroma?collection=docs``,
    ``milvus:///data/milvus.db?collection=docs``, ``lancedb:///data/lance?table=docs``,
    ``faiss:///data/index.faiss``. Tables name their columns with ``&id_column=...&vector_column=...``.
    """
    parsed = parse_uri(uri)
    return backend_class(parsed.scheme).from_uri(parsed, **options)
