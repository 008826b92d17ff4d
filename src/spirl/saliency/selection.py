"""Salient-patch selection: dynamic-K (SPEC §5), fixed-K, MAE-All; K_max from a ratio (SPEC §6) and the cumulative
error curve (Fig. 3). The mr* estimate from the per-frame K of many frames is `spirl.saliency.mr`.

Conventions shared by every function here:

- Errors are one frame's reconstruction errors E (SPEC §4), N >= 2 finite non-negative values, by patch index.
- Sorting is ascending and stable (ties by patch index); selected patches are returned in ascending error
  order (the order handed to the agent, SPEC §5), so the largest error comes last.
- Arithmetic is float64 in a fixed order (`_pairwise_sum`, then IEEE division, addition, subtraction), so the
  numpy reference `dynamic_k` and the torch `dynamic_k_batched` take bit-identical decisions on any device
  that has float64 (CPU, CUDA; not MPS).
- Batched outputs are (indices [B, K_max] int64, counts [B] int64): row b holds its counts[b] selected
  patches left-aligned, then -1 padding.

The cap property (SPEC §5, "the cap is the same as truncating the uncapped choice"): it holds exactly,
also in floating point. D_i = q_i + q_{i+1} is non-decreasing in i because q is sorted, and every operation
producing |D_i - c| is a monotone rounding, so |D_i - c| is non-increasing then non-decreasing in i. Hence the
first minimiser over the window W = [N - K_max, N - 2] is the uncapped first minimiser i_u when i_u is in W,
and N - K_max otherwise: K_capped = min(K_uncapped, K_max), and the capped set is the K_capped largest errors
of the uncapped set.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

from spirl.params import SELECTIONS

# Ratios (mr, bin widths, coverage) are read as the nearest fraction with a denominator up to this bound,
# which is exact for any decimal with at most 4 digits (0.35 -> 7/20) and for simple fractions (1/3).
_RATIO_MAX_DENOMINATOR = 10_000


def as_fraction(value: float, name: str) -> Fraction:
    """Read a float ratio as an exact fraction (nearest with denominator <= 10^4).

    Args:
        value: the ratio as written in a config (e.g. 0.35).
        name: its name, for the error message.
    Returns:
        Fraction, e.g. Fraction(7, 20) for 0.35, so that floor(N * ratio) is integer arithmetic.
    """
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return Fraction(value).limit_denominator(_RATIO_MAX_DENOMINATOR)


def k_max_from_ratio(num_patches: int, ratio: float) -> int:
    """K_max = floor(N * mr) with integer arithmetic (SPEC §6).

    Args:
        num_patches: N.
        ratio: mr in (0, 1], read exactly by `as_fraction` (144 * 0.35 -> 50, not 144 * 0.35 = 50.4 -> 50
            by luck; 144 * 0.3 -> 43, 0.2 -> 28, 0.5 -> 72).
    Returns:
        floor(N * mr), an int in [0, N] (0 only for mr < 1/N; `dynamic_k` rejects K_max < 2).
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    frac = as_fraction(ratio, "ratio")
    return (num_patches * frac.numerator) // frac.denominator


def _check_k(k: int, num_patches: int, low: int, name: str) -> None:
    """Raise ValueError unless `k` is an int in [low, num_patches]."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"{name} must be an int in [{low}, {num_patches}], got {k!r}")
    if not low <= k <= num_patches:
        raise ValueError(f"{name}={k} is outside the allowed range [{low}, N={num_patches}]")


def _check_xscale(xscale: float) -> None:
    """Raise ValueError unless xscale is finite and > 0 (the target slope xscale / N, SPEC §5)."""
    if not (math.isfinite(xscale) and xscale > 0.0):
        raise ValueError(f"xscale must be finite and > 0, got {xscale!r}")


def _frame_errors(errors: np.ndarray | torch.Tensor) -> np.ndarray:
    """One frame's errors as a validated float64 numpy vector.

    Args:
        errors: [N] numpy array or torch tensor (any float or int dtype, any device), N >= 2.
    Returns:
        [N] float64 copy; raises ValueError if not 1-D, N < 2, non-finite or negative.
    """
    if isinstance(errors, torch.Tensor):
        errors = errors.detach().to("cpu", torch.float64).numpy()
    e = np.array(errors, dtype=np.float64)
    if e.ndim != 1 or e.shape[0] < 2:
        raise ValueError(f"errors must be 1-D with N >= 2 values, got shape {e.shape}")
    if not np.all(np.isfinite(e)) or np.any(e < 0.0):
        raise ValueError("errors must be finite and non-negative")
    return e


def _pairwise_sum(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Sum over the last axis in a fixed pairwise order, bit-identical in numpy and torch on any device.

    Args:
        x: [..., N] float64 (numpy or torch).
    Returns:
        [...] float64: repeatedly x[:h] + x[h:2h] (h = n // 2), an odd last element carried to the next round.
        Only elementwise IEEE additions, so the result does not depend on a library's reduction order.
    """
    while x.shape[-1] > 1:
        n = x.shape[-1]
        h = n // 2
        s = x[..., :h] + x[..., h : 2 * h]
        if n % 2:
            rest = x[..., 2 * h :]
            s = torch.cat([s, rest], dim=-1) if isinstance(s, torch.Tensor) else np.concatenate([s, rest], axis=-1)
        x = s
    return x[..., 0]


def _two_step_slopes(errors: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort one frame's errors and compute q and the two-step slopes D (SPEC §5 steps 1-3, whole range).

    Args:
        errors: [N] errors E by patch index.
    Returns:
        order [N] int64: patch indices in ascending error order (stable, ties by index);
        q [N] float64: q_i = e_(i) / sum_j e_j (q_i = 1/N for every i when all errors are 0);
        d [N - 1] float64: D_i = q_i + q_{i+1} for i = 0..N-2.
    """
    e = _frame_errors(errors)
    order = np.argsort(e, kind="stable").astype(np.int64)
    sorted_e = e[order]
    total = _pairwise_sum(sorted_e)
    n = e.shape[0]
    q = sorted_e / total if total > 0.0 else np.full(n, 1.0 / n, dtype=np.float64)
    return order, q, q[:-1] + q[1:]


def dynamic_k(errors: np.ndarray | torch.Tensor, k_max: int, xscale: float = 1.0) -> np.ndarray:
    """Dynamic-K selection for one frame (SPEC §5), the numpy reference.

    k* = the first i in W = [N - K_max, N - 2] minimising |D_i - xscale / N|; K = N - k*; selected = the
    patches at sorted positions k*..N-1. So 2 <= K <= K_max; K_max = N is no cap; K = K_max when all errors
    are equal (including all zero); K is non-increasing in xscale.

    Args:
        errors: [N] errors E by patch index (numpy or torch), finite, >= 0.
        k_max: K_max, an int in [2, N].
        xscale: target slope factor (> 0); 1 is the released code, 2 a true 45° (SPEC §12 #5).
    Returns:
        [K] int64 patch indices in ascending error order.
    """
    order, _, d = _two_step_slopes(errors)
    n = order.shape[0]
    _check_k(k_max, n, 2, "k_max")
    _check_xscale(xscale)
    start = n - k_max
    dist = np.abs(d[start:] - xscale / n)
    k_star = start + int(np.argmin(dist))  # np.argmin returns the first minimiser
    return order[k_star:].copy()


def _check_batch(errors: torch.Tensor) -> int:
    """Return N for a [B, N] float/int tensor with N >= 2, else raise ValueError (no device sync)."""
    if not isinstance(errors, torch.Tensor) or errors.ndim != 2 or errors.shape[1] < 2:
        shape = tuple(errors.shape) if hasattr(errors, "shape") else type(errors).__name__
        raise ValueError(f"errors must be a torch tensor [B, N] with N >= 2, got {shape}")
    return int(errors.shape[1])


def _first_argmin(x: torch.Tensor) -> torch.Tensor:
    """Index of the first minimum along dim 1.

    Args:
        x: [B, L] float.
    Returns:
        [B] int64: the smallest j with x[b, j] == min_j x[b, j] (explicit, not relying on argmin's tie rule).
    """
    low = x.amin(dim=1, keepdim=True)
    idx = torch.arange(x.shape[1], device=x.device, dtype=torch.int64).expand_as(x)
    return torch.where(x == low, idx, x.shape[1]).amin(dim=1)


def _suffix_left_aligned(order: torch.Tensor, start: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Take each row's sorted positions start..N-1, left-aligned in `width` columns, -1 padded.

    Args:
        order: [B, N] int64 patch indices in ascending error order.
        start: [B] int64 first kept sorted position (N - K).
        width: output columns (>= N - min(start)).
    Returns:
        indices [B, width] int64 (-1 after the K = N - start kept patches), counts [B] int64 = N - start.
    """
    n = order.shape[1]
    pos = start[:, None] + torch.arange(width, device=order.device, dtype=torch.int64)[None, :]
    picked = order.gather(1, pos.clamp(max=n - 1))
    return torch.where(pos < n, picked, -1), n - start


def dynamic_k_batched(
    errors: torch.Tensor, k_max: int, xscale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic-K selection for a batch of frames on torch (SPEC §5), bit-identical to `dynamic_k` per row.

    No Python loop over frames and no host sync; float64 internally (the device must support it).
    Inputs are not checked for negative or non-finite values (that would need a sync); `dynamic_k` does.

    Args:
        errors: [B, N] errors E, any float/int dtype, any device.
        k_max: K_max, an int in [2, N].
        xscale: target slope factor (> 0).
    Returns:
        indices [B, K_max] int64: row b = its K_b patches in ascending error order, then -1;
        counts [B] int64: K_b, with 2 <= K_b <= K_max.
    """
    n = _check_batch(errors)
    _check_k(k_max, n, 2, "k_max")
    _check_xscale(xscale)
    e = errors.detach().to(torch.float64)
    sorted_e, order = torch.sort(e, dim=1, stable=True)
    total = _pairwise_sum(sorted_e)[:, None]
    positive = total > 0.0
    q = torch.where(positive, sorted_e / torch.where(positive, total, 1.0), 1.0 / n)
    start = n - k_max
    d = q[:, start:-1] + q[:, start + 1 :]  # D_i for i in W = [N - K_max, N - 2]
    k_star = start + _first_argmin(torch.abs(d - xscale / n))
    return _suffix_left_aligned(order, k_star, k_max)


def fixed_k(errors: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
    """Fixed-K selection for one frame: the k largest errors (SPEC §5, Table 3's K = floor(N * ratio)).

    Args:
        errors: [N] errors E by patch index.
        k: K, an int in [1, N].
    Returns:
        [k] int64 patch indices in ascending error order: the last k of the stable ascending sort, so among
        tied errors at the boundary the higher patch indices are kept (as in `dynamic_k`).
    """
    e = _frame_errors(errors)
    _check_k(k, e.shape[0], 1, "k")
    return np.argsort(e, kind="stable").astype(np.int64)[e.shape[0] - k :]


def fixed_k_batched(errors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-K selection for a batch on torch, identical to `fixed_k` per row.

    Args:
        errors: [B, N] errors E, any device.
        k: K, an int in [1, N].
    Returns:
        indices [B, k] int64 in ascending error order (no padding); counts [B] int64 all equal to k.
    """
    n = _check_batch(errors)
    _check_k(k, n, 1, "k")
    order = torch.sort(errors.detach().to(torch.float64), dim=1, stable=True).indices
    counts = torch.full((errors.shape[0],), k, dtype=torch.int64, device=errors.device)
    return order[:, n - k :], counts


def all_patches(num_patches: int) -> np.ndarray:
    """MAE-All: every patch (SPEC §5).

    Args:
        num_patches: N >= 1.
    Returns:
        [N] int64 arange(N), in patch index order.
    """
    if num_patches < 1:
        raise ValueError(f"num_patches must be >= 1, got {num_patches}")
    return np.arange(num_patches, dtype=np.int64)


def all_patches_batched(errors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE-All for a batch: every patch in index order (errors only give the shape and device).

    Args:
        errors: [B, N].
    Returns:
        indices [B, N] int64 (each row arange(N)); counts [B] int64 all equal to N.
    """
    return all_patches_of(errors.shape[0], _check_batch(errors), errors.device)


def all_patches_of(batch: int, num_patches: int, device: torch.device | str = "cpu"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE-All's selection of `batch` frames without any error map: indices [B, N] (rows arange(N)), counts [B] = N."""
    indices = torch.arange(num_patches, dtype=torch.int64, device=device).expand(batch, num_patches).clone()
    return indices, torch.full((batch,), num_patches, dtype=torch.int64, device=device)


def select_batched(
    errors: torch.Tensor, method: str, k_max: int, xscale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch the pipeline's selection (`saliency.selection`): dynamic, fixed or all.

    Args:
        errors: [B, N] errors E.
        method: "dynamic" (K <= k_max, SPEC §5), "fixed" (K = k_max) or "all" (k_max must equal N).
        k_max: K_max = floor(N * mr), the output width.
        xscale: target slope factor for "dynamic" (ignored otherwise).
    Returns:
        indices [B, k_max] int64 (ascending error order, or index order for "all"; -1 padded);
        counts [B] int64.
    """
    if method == "dynamic":
        return dynamic_k_batched(errors, k_max, xscale)
    if method == "fixed":
        return fixed_k_batched(errors, k_max)
    if method == "all":
        n = _check_batch(errors)
        if k_max != n:
            raise ValueError(f"method 'all' keeps every patch: k_max must equal N={n}, got {k_max}")
        return all_patches_batched(errors)
    raise ValueError(f"method must be one of {SELECTIONS} (saliency.selection), got {method!r}")


def cumulative_error_curve(errors: np.ndarray | torch.Tensor) -> np.ndarray:
    """Normalised cumulative sum of the ascending-sorted errors (the Lorenz curve of Fig. 3).

    Args:
        errors: [N] errors E by patch index.
    Returns:
        [N] float64: C_i = sum_{j<=i} e_(j) / sum_j e_j, non-decreasing, C_{N-1} = 1 exactly;
        (i + 1) / N when all errors are 0 (treated as all equal, as in `dynamic_k`).
    """
    e = _frame_errors(errors)
    c = np.cumsum(np.sort(e, kind="stable"), dtype=np.float64)
    n = e.shape[0]
    if c[-1] == 0.0:
        return np.arange(1, n + 1, dtype=np.float64) / n
    return c / c[-1]
