"""The store layer's exceptions (a module of its own so that every store module can raise them)."""

from __future__ import annotations

__all__ = ["StoreError", "StoreLockedError"]


class StoreError(RuntimeError):
    """A store refused or failed an operation; the message names the store, the operation and the cause in one
    line (missing ids, wrong layout, unsupported similarity, a backend error, ...)."""


class StoreLockedError(StoreError):
    """Another nudge-rag write (fine-tune, revert or reapply) holds the store's writer lock."""
