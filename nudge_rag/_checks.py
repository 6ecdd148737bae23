"""Input validation shared by the solver: shapes, dtypes, finiteness and normalisation."""

from __future__ import annotations

import numpy as np

__all__ = ["as_matrix", "normalize_rows", "check_gamma"]

# Rows checked for NaN/inf at a time, so the check needs no (n, d) boolean temporary.
_CHECK_ROWS = 65_536


def as_matrix(x: object, name: str, *, dim: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """Validate a 2-D float array and return it without copying when possible.

    Accepts float32 and float64; rejects integer, boolean, object and mixed inputs, wrong rank,
    a mismatched second dimension and non-finite values. The caller's array is never modified.
    """
    if isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, (list, tuple)):
        arr = np.asarray(x)
    else:
        raise TypeError(f"{name} must be a 2-D float32/float64 numpy array, got {type(x).__name__}")
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows x dimension), got shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has dimension 0 (shape {arr.shape})")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has dimension {arr.shape[1]}, expected {dim} to match the document embeddings")
    if not all(np.isfinite(arr[i : i + _CHECK_ROWS]).all() for i in range(0, arr.shape[0], _CHECK_ROWS)):
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise ValueError(f"{name} contains NaN or inf in {bad.size} row(s), first at row {int(bad[0])}")
    return arr


def normalize_rows(x: np.ndarray, name: str, dtype: np.dtype = np.float32) -> np.ndarray:
    """Return a new (n, d) array of unit-norm rows in ``dtype``; zero rows are an error."""
    out = np.array(x, dtype=dtype, copy=True)
    norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64))  # no (n, d) temporary
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(f"{name} has {zero.size} zero vector(s) (first at row {int(zero[0])}); cannot normalise")
    out /= norms[:, None].astype(dtype, copy=False)
    return out


def check_gamma(gamma: object, *, upper: float | None, name: str = "gamma") -> float:
    """Validate a step size: a finite non-negative number, at most ``upper`` when given."""
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {gamma!r}")
    g = float(gamma)
    if not np.isfinite(g) or g < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {gamma!r}")
    if upper is not None and g > upper:
        raise ValueError(f"{name} must be <= {upper} for this variant, got {gamma!r}")
    return g
