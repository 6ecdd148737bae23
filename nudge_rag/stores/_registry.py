"""Store URIs and the one registry mapping a URI scheme to its backend class (imported lazily).

Adding a backend is one module with a class that has ``from_uri(StoreURI)`` plus one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

__all__ = ["StoreURI", "BACKENDS", "parse_uri", "open_store", "backend_class", "SECRET_PARAMS", "is_secret_param"]

#: Query parameters that hold a credential in some backend's URI (matched case-insensitively; any parameter whose
#: name contains "password", "secret", "token" or "key" is treated as one too).
SECRET_PARAMS = frozenset({"password", "sslpassword", "api_key", "apikey", "token", "secret", "access_key", "key"})
_SECRET_PARTS = ("password", "passwd", "secret", "token", "key", "credential", "auth")


def is_secret_param(name: str) -> bool:
    """True for a URI query parameter that carries a credential (``password``, ``api_key``, ``token``, ...)."""
    low = name.lower()
    return low in SECRET_PARAMS or any(part in low for part in _SECRET_PARTS)


#: URI scheme -> "module:Class" (module relative to ``nudge_rag.stores``).
BACKENDS: dict[str, str] = {
    "postgresql": "pgvector:PgVectorStore",
    "postgres": "pgvector:PgVectorStore",
    "qdrant": "qdrant:QdrantStore",
    "chroma": "chroma:ChromaStore",
    "milvus": "milvus:MilvusStore",
    "lancedb": "lancedb:LanceDBStore",
    "faiss": "faiss:FaissStore",
    "sqlite": "sqlite:SQLiteStore",
    "duckdb": "duckdb:DuckDBStore",
    "typesense": "typesense:TypesenseStore",
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

    def options(self, *names: str) -> dict[str, str]:
        """The query parameters among ``names`` that the URI gives (keyword arguments for a backend)."""
        return {k: self.params[k] for k in names if k in self.params}

    def secrets(self) -> tuple[str, ...]:
        """Every credential the URI carries (userinfo password, secret query parameters), raw and URL-encoded."""
        values = [self.password or ""] + [v for k, v in self.params.items() if is_secret_param(k)]
        out = {v for v in values if v} | {quote(v, safe="") for v in values if v}
        return tuple(sorted(out, key=len, reverse=True))

    def redacted(self) -> str:
        """The URI with every credential (userinfo password, ``password``, ``sslpassword``, ``api_key``, ``token``,
        ...) replaced by ``***``."""
        parts = urlsplit(self.raw)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, hostport = netloc.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{hostport}"
        query = "&".join(
            f"{k}=***" if is_secret_param(unquote(k)) else (f"{k}={v}" if sep else k)
            for k, sep, v in (item.partition("=") for item in parts.query.split("&") if item)
        )
        out = f"{parts.scheme}://{netloc}{parts.path}" if "://" in self.raw else f"{parts.scheme}:{parts.path}"
        out += f"?{query}" if query else ""
        for secret in self.secrets():  # belt and braces: nothing of a credential survives anywhere
            out = out.replace(secret, "***")
        return out

    @property
    def is_local(self) -> bool:
        """True for a path on this machine (no host), False for a server address."""
        return not self.host or self.host == "."


def parse_uri(uri: str) -> StoreURI:
    """Split ``uri`` into a :class:`StoreURI`; an unknown scheme raises ``ValueError`` listing the known ones."""
    if not isinstance(uri, str) or "://" not in uri and ":" not in uri:
        # never echo the string: it may hold a password
        raise ValueError("a store URI looks like qdrant:///path?collection=C (the value given is not a URI)")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise ValueError("the store URI cannot be parsed (check its host and port); it is not shown here") from None
    scheme = parts.scheme.lower().split("+")[0]
    if scheme not in BACKENDS:
        shown = scheme if scheme.isalnum() and len(scheme) < 20 else "?"
        raise ValueError(f"unknown store scheme {shown!r}; known: {', '.join(sorted(BACKENDS))}")
    host = parts.hostname or ""
    path = unquote(parts.path)
    if parts.netloc == ".":  # qdrant://./relative/path
        host, path = "", "." + path
    elif not parts.netloc and path and not path.startswith("/"):  # qdrant:relative/path
        host = ""
    params = dict(parse_qsl(parts.query, keep_blank_values=False))
    return StoreURI(uri, scheme, host, port, path, parts.username, parts.password, params)


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
    ``&ledger=PATH`` keeps the ledger in that SQLite file (default: beside a store on disk, or in the user's data
    folder for a server). Every credential in ``uri`` is scrubbed from the store's messages.
    """
    from ._errors import StoreError

    parsed = parse_uri(uri)
    ledger = parsed.params.get("ledger")
    if ledger is not None:
        parsed = StoreURI(
            parsed.raw,
            parsed.scheme,
            parsed.host,
            parsed.port,
            parsed.path,
            parsed.username,
            parsed.password,
            {k: v for k, v in parsed.params.items() if k != "ledger"},
        )
    secrets = parsed.secrets()
    try:
        store = backend_class(parsed.scheme).from_uri(parsed, **options)
    except ImportError:
        raise
    except Exception as exc:  # a backend's own error may quote the URI or DSN: scrub it, one line
        msg = " ".join((str(exc) or type(exc).__name__).split())
        for s in secrets:
            msg = msg.replace(s, "***")
        err = type(exc)(msg) if isinstance(exc, (StoreError, ValueError, FileNotFoundError)) else None
        if err is None:
            err = StoreError(f"cannot open {parsed.redacted()}: {type(exc).__name__}: {msg}")
        raise err from None
    store.secrets = secrets
    if ledger is not None:
        store.use_ledger(ledger)
    return store
