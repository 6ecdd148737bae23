"""Input validation shared by the solver: shapes, dtypes, finiteness and normalisation."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["as_matrix", "normalize_rows", "check_gamma"]

# Rows checked for NaN/inf at a time, so the check needs no (n, d) boolean temporary.
_CHECK_ROWS = 65_536


_F32_MAX = float(np.finfo(np.float32).max)


def as_matrix(
    x: object, name: str, *, dim: int | None = None, allow_empty: bool = False, float32_range: bool = True
) -> np.ndarray:
    """Validate a 2-D float array and return it without copying when possible.

    Accepts float32 and float64; rejects integer, boolean, object and mixed inputs, wrong rank,
    a mismatched second dimension and non-finite values. With ``float32_range`` (the default) float64 values
    beyond the float32 range are refused too, since the solver and search compute in float32 (documents,
    which are normalised first, pass ``False``). The caller's array is never modified.
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
    if float32_range and arr.dtype == np.float64 and arr.size:
        top = max(float(np.abs(arr[i : i + _CHECK_ROWS]).max()) for i in range(0, arr.shape[0], _CHECK_ROWS))
        if top > _F32_MAX:
            raise ValueError(
                f"{name} has values up to {top:.3g}, beyond the float32 range ({_F32_MAX:.3g}) the computation uses"
            )
    return arr


def normalize_rows(x: np.ndarray, name: str, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """Return a new (n, d) array of unit-norm rows in ``dtype``; zero rows are an error.

    Rows whose scale would overflow or underflow float32 (e.g. float64 values of 1e39 or 1e-50) are first
    divided by their largest absolute value, in the input precision, so every finite non-zero row normalises.
    """
    with np.errstate(over="ignore", under="ignore"):  # such rows are rescaled just below
        out = np.array(x, dtype=dtype, copy=True)
    if np.asarray(x).dtype == np.float64 and out.size:
        peak = np.concatenate([np.abs(x[i : i + _CHECK_ROWS]).max(axis=1) for i in range(0, x.shape[0], _CHECK_ROWS)])
        odd = np.flatnonzero((peak > 1e30) | ((peak < 1e-30) & (peak > 0)))
        if odd.size:
            out[odd] = (x[odd] / peak[odd, None]).astype(dtype)
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
