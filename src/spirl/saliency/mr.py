"""The maximal ratio mr (SPEC §6, paper B.5): uncapped dynamic K per frame, the histogram of K/N and mr* (integer
arithmetic on exact ratios, as `spirl.saliency.selection.k_max_from_ratio`), the summary, and the candidates of the
rule's two ambiguities (SPEC §12 #4 error space, #5 the slope's xscale) from the same error maps."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import torch

from spirl.params import Params
from spirl.saliency.error_maps import ErrorMapSettings, error_map, frames_to_tensor, in_space
from spirl.saliency.incremental import sequence_error_maps
from spirl.saliency.mae import MaskedAutoencoder, patchify
from spirl.saliency.selection import as_fraction, dynamic_k_batched, k_max_from_ratio

CANDIDATE_KEYS = ("mr_star", "coverage_at_mr_star", "k_mean", "k_median", "k_min_seen", "k_max_seen",
                  "coverage_at_paper_adopted")


def _check_ks(ks: np.ndarray, num_patches: int) -> np.ndarray:
    """Per-frame K values as a validated int64 vector with 1 <= K <= N (ValueError otherwise)."""
    k = np.asarray(ks)
    if k.ndim != 1 or k.shape[0] == 0 or not np.issubdtype(k.dtype, np.integer):
        raise ValueError(f"ks must be a non-empty 1-D integer array, got shape {k.shape} dtype {k.dtype}")
    k = k.astype(np.int64)
    if k.min() < 1 or k.max() > num_patches:
        raise ValueError(f"ks must lie in [1, N={num_patches}], got range [{k.min()}, {k.max()}]")
    return k


def _grid_bins(step: float) -> tuple[Fraction, int]:
    """Read a grid/bin width as an exact fraction w with 1/w an integer; return (w, 1/w)."""
    w = as_fraction(step, "bin width")
    if w <= 0 or w > 1 or w.numerator != 1:
        raise ValueError(f"bin width must be 1/m for an integer m >= 1 (e.g. 0.05), got {step!r}")
    return w, w.denominator


def k_ratio_histogram(
    ks: np.ndarray, num_patches: int, bin_width: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of K/N in right-closed bins (0, w], (w, 2w], ..., (1 - w, 1] (SPEC §6, Fig. 8).

    Bin j holds j*w < K/N <= (j+1)*w, computed with integers: j = ceil(K / (N w)) - 1. An exact boundary
    falls in the lower bin: K/N = 0.10 is in (5%, 10%] (j = 1 for w = 0.05).

    Args:
        ks: [F] int per-frame K (uncapped dynamic-K), 1 <= K <= N.
        num_patches: N.
        bin_width: w, with 1/w an integer (0.05 -> 20 bins).
    Returns:
        bin_edges [1/w + 1] float64 (0, w, ..., 1); counts [1/w] int64 summing to F.
    """
    k = _check_ks(ks, num_patches)
    _, n_bins = _grid_bins(bin_width)
    j = -((-k * n_bins) // num_patches) - 1  # ceil(K m / N) - 1 with m = 1/w bins, integer-exact
    counts = np.bincount(j, minlength=n_bins).astype(np.int64)
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    return edges, counts


def mr_star(
    ks: np.ndarray, num_patches: int, grid_step: float = 0.05, coverage: float = 0.999
) -> tuple[float, float]:
    """Estimate mr*: the smallest grid ratio under which MORE than `coverage` of frames keep all K (SPEC §6).

    Candidates r = w, 2w, ..., 1 - w (5%..95%); frame f is covered at r when K_f <= k_max_from_ratio(N, r).
    The strict "more than" is integer-exact: covered * den(coverage) > num(coverage) * F. If no candidate
    qualifies, returns (1.0, 1.0): mr = 100% (no cap) covers every frame since K <= N.

    Args:
        ks: [F] int per-frame K from uncapped dynamic-K, 1 <= K <= N.
        num_patches: N.
        grid_step: w, with 1/w an integer.
        coverage: required fraction in [0, 1) (0.999 = the paper's 99.9%).
    Returns:
        (mr*, fraction of frames covered at mr*), both floats.
    """
    k = _check_ks(ks, num_patches)
    w, n_bins = _grid_bins(grid_step)
    if not 0.0 <= coverage < 1.0:
        raise ValueError(f"coverage must be in [0, 1), got {coverage!r}")
    cov = as_fraction(coverage, "coverage")
    frames = k.shape[0]
    for j in range(1, n_bins):
        ratio = float(j * w)
        covered = int(np.count_nonzero(k <= k_max_from_ratio(num_patches, ratio)))
        if covered * cov.denominator > cov.numerator * frames:
            return ratio, covered / frames
    return 1.0, 1.0


def episode_starts(episodes: np.ndarray) -> np.ndarray:
    """[F] bool: the rows of a frames file (in playing order) that start an episode, from its episode index [F]."""
    episodes = np.asarray(episodes)
    return np.concatenate([[True], episodes[1:] != episodes[:-1]]) if len(episodes) else np.zeros(0, bool)


def normalized_maps(model: MaskedAutoencoder, frames: np.ndarray, batch: int, settings: ErrorMapSettings,
                    starts: np.ndarray | None = None, on_batch=None) -> tuple[np.ndarray, np.ndarray, float]:
    """Normalised-pixel error maps and patch pixel variances (unbiased) of every frame, `batch` frames per call.

    With `starts` ([F] bool, episode starts of frames in playing order), each frame recomputes only the targets
    whose 3x3 block changed since the frame before it (saliency.incremental); without, every map is computed in full.
    Returns: (errors [F, N] float32, variances [F, N] float32, share of targets computed); raw-space errors are
        errors x (variance + eps).
    """
    normalized = dataclasses.replace(settings, space="normalized")  # raw = these x (variance + eps)
    n = model.config.num_patches
    if starts is not None:
        errors, share = sequence_error_maps(model, frames, starts, normalized, batch, on_batch)
    else:
        errors, share = [], 1.0
        for begin in range(0, len(frames), batch):
            errors.append(error_map(model, frames[begin:begin + batch], normalized).cpu().numpy())  # [b, N]
            if on_batch is not None:
                on_batch(len(errors[-1]))
        errors = np.concatenate(errors) if errors else np.zeros((0, n), np.float32)
    variances = [patchify(frames_to_tensor(frames[begin:begin + batch], "cpu"), model.config.patch_size)
                 .var(dim=-1, unbiased=True).numpy() for begin in range(0, len(frames), batch)]  # [b, N] each
    return errors, np.concatenate(variances) if variances else np.zeros((0, n), np.float32), share


def uncapped_ks(errors: np.ndarray, xscale: float) -> np.ndarray:
    """K of dynamic K without a cap (K_max = N) for every frame's error map [F, N] -> [F] int64."""
    if not len(errors):
        return np.zeros(0, np.int64)
    return dynamic_k_batched(torch.from_numpy(errors), errors.shape[1], xscale)[1].numpy().astype(np.int64)


def candidates(errors: np.ndarray, variances: np.ndarray, params: Params, game: str, eps: float) -> list[dict]:
    """mr* and K statistics under each cheap variation of the rule (the error's space x the slope's xscale):
    what each of SPEC §12 #4 and #5 contributes to K, from the same error maps.

    Args: errors [F, N] normalised-space error maps; variances [F, N] the patches' unbiased pixel variances.
    Returns: one dict per (error_space, xscale) in (normalized, raw) x (1, 2), with CANDIDATE_KEYS.
    """
    out = []
    for space in ("normalized", "raw"):
        for xscale in (1.0, 2.0):
            ks = uncapped_ks(in_space(errors, variances, space, eps), xscale)
            summary = summarize_ks(ks, errors.shape[1], game, params)
            out.append({"error_space": space, "xscale": xscale,
                        **{k: summary[k] for k in CANDIDATE_KEYS}})
    return out


def summarize_ks(ks: np.ndarray, n: int, game: str, params: Params) -> dict:
    """mr*, its coverage, the histogram, K statistics, and the published ratios for comparison.

    Args: ks [F] per-frame K of uncapped dynamic K (F >= 1); n patches per frame.
    """
    sal = params.saliency
    edges, counts = k_ratio_histogram(ks, n, sal.mr_grid_step)
    star, coverage = mr_star(ks, n, sal.mr_grid_step, sal.mr_coverage)
    paper = sal.paper_mr[game]
    return {
        "game": game, "n_frames": int(len(ks)), "num_patches": n,
        "mr_star": star, "coverage_at_mr_star": coverage,
        "mr_paper_adopted": paper, "k_max_paper_adopted": k_max_from_ratio(n, paper),
        "coverage_at_paper_adopted": float(np.mean(ks <= k_max_from_ratio(n, paper))),
        "mr_star_paper": sal.paper_mr_star[game],
        "bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
        "k_mean": float(ks.mean()), "k_median": float(np.median(ks)), "k_max_seen": int(ks.max()),
        "k_min_seen": int(ks.min()),
    }
