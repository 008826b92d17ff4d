"""What a trained agent looks at (SPEC §16): perturbation saliency, attention overlays and mass shares.

Pure functions on numpy arrays, independent of any network: the caller supplies `q_fn`, which maps a batch of raw
observation stacks to the agents' expected Q-values (for a SPIRL-family agent it runs the whole representation:
scorer, selection, embedding, so selection is part of what is measured).

Perturbation saliency (Greydanus et al. 2018, "Visualizing and Understanding Atari Agents"):
  Ĩ_c = I·(1 − M_c) + A(I)·M_c,  M_c(x, y) = exp(−((x−cx)² + (y−cy)²) / (2σ²))  (σ = 5 px, M_c = 1 at the centre),
  A(I) = I blurred by a Gaussian (σ_A = 3 px), each channel separately, as two separable 1-D convolutions with a
  kernel truncated at `truncate`·σ_A (4σ_A by default, radius ceil(4σ_A) = 12 px) and normalised to sum 1; the frame
  is padded by symmetric reflection with the edge pixel repeated (numpy "symmetric", scipy.ndimage "reflect").
  S(c) = ½‖Q(I) − Q(Ĩ_c)‖² over the actions' expected Q-values.
  Centres lie on every `stride`-th pixel from 0: rows 0, s, 2s, … ≤ H−1 (likewise columns); 96 px, s = 5 → 0 … 95,
  20 per axis, 400 centres. Only one frame of the stack is perturbed (`frame`, default −1: the newest, the frame the
  decision is made on); the other frames stay. The perturbed frame is rounded half to even and clipped back to uint8,
  because the representation reads uint8 frames. The grid of scores is placed at the centres' pixel coordinates and
  interpolated bilinearly to every pixel (separably, np.interp); pixels beyond the last centre take the nearest
  centre's value (only when H−1 or W−1 is not a multiple of the stride).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

QFn = Callable[[np.ndarray], np.ndarray]  # stacks [N, F, H, W, C] uint8 -> expected Q-values [N, A]


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The 1-D Gaussian kernel exp(−i²/(2σ²)) for i in [−r, r], r = ceil(truncate·σ), normalised to sum 1.

    Returns: [2r+1] float64.
    """
    sigma = _positive("sigma", sigma)
    radius = math.ceil(_positive("truncate", truncate) * sigma)
    i = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(i**2) / (2.0 * sigma**2))
    return k / k.sum()


def gaussian_blur(image: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """A(I): `image` [H, W] or [H, W, C] blurred over H and W (each channel separately) by a Gaussian of std `sigma`
    px, truncated at `truncate`·σ, symmetric-reflect padding (edge pixel repeated). Returns float64 of image's shape.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be [H, W] or [H, W, C], got shape {img.shape}")
    k = gaussian_kernel1d(sigma, truncate)
    r = (k.size - 1) // 2
    out = img
    for axis in (0, 1):
        pad = [(0, 0)] * img.ndim
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="symmetric")  # np.pad reflects repeatedly when r exceeds the axis length
        windows = np.lib.stride_tricks.sliding_window_view(padded, k.size, axis=axis)  # [..., 2r+1]
        out = windows @ k
    return out


def mask_centres(size: int, stride: int = 5) -> np.ndarray:
    """Mask centres along one axis of `size` px: 0, stride, 2·stride, … ≤ size−1. Returns [n] int64."""
    return np.arange(0, _positive_int("size", size), _positive_int("stride", stride), dtype=np.int64)


def gaussian_mask(shape: tuple[int, int], centre: tuple[float, float], sigma: float = 5.0) -> np.ndarray:
    """M(y, x) = exp(−((x−cx)² + (y−cy)²) / (2σ²)) on an [H, W] grid, centre = (cy, cx) (row, column); 1 at the
    centre. Returns [H, W] float64."""
    sigma = _positive("sigma", sigma)
    h, w = shape
    gy = np.exp(-((np.arange(h) - centre[0]) ** 2) / (2.0 * sigma**2))
    gx = np.exp(-((np.arange(w) - centre[1]) ** 2) / (2.0 * sigma**2))
    return gy[:, None] * gx[None, :]


def perturb_frame(frame: np.ndarray, blurred: np.ndarray, centres: np.ndarray, sigma_mask: float = 5.0) -> np.ndarray:
    """Ĩ_c = I·(1 − M_c) + A(I)·M_c for each centre, rounded half to even and clipped to uint8.

    Args: frame [H, W, C] uint8 (I); blurred [H, W, C] float (A(I)); centres [N, 2] (row, column).
    Returns: [N, H, W, C] uint8.
    """
    sigma = _positive("sigma_mask", sigma_mask)
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    h, w = frame.shape[:2]
    gy = np.exp(-((np.arange(h)[None, :] - c[:, :1]) ** 2) / (2.0 * sigma**2))  # [N, H]
    gx = np.exp(-((np.arange(w)[None, :] - c[:, 1:]) ** 2) / (2.0 * sigma**2))  # [N, W]
    m = (gy[:, :, None] * gx[:, None, :])[..., None]  # [N, H, W, 1]
    mixed = frame.astype(np.float64)[None] * (1.0 - m) + np.asarray(blurred, dtype=np.float64)[None] * m
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _q_values(q_fn: QFn, stacks: np.ndarray) -> np.ndarray:
    q = np.asarray(q_fn(stacks), dtype=np.float64)
    if q.ndim != 2 or q.shape[0] != stacks.shape[0] or not np.all(np.isfinite(q)):
        raise ValueError(f"q_fn must return finite Q-values [N={stacks.shape[0]}, A], got shape {q.shape}")
    return q


def perturbation_grid(
    stack: np.ndarray,
    q_fn: QFn,
    stride: int = 5,
    sigma_blur: float = 3.0,
    sigma_mask: float = 5.0,
    frame: int = -1,
    batch: int = 64,
    truncate: float = 4.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Perturbation scores S(c) = ½‖Q(I) − Q(Ĩ_c)‖² on the grid of mask centres (see the module docstring).

    q_fn is called once on the unperturbed stack ([1, F, H, W, C]), then on batches of at most `batch` perturbed
    stacks, centres in row-major order.

    Args: stack [F, H, W, C] uint8, the agent's observation (oldest frame first); q_fn(stacks [N, F, H, W, C] uint8)
        -> [N, A] expected Q-values; stride px between centres; sigma_blur σ_A and sigma_mask σ in px; frame the index
        (negative from the end) of the perturbed frame; batch the most stacks per q_fn call; truncate the blur
        kernel's radius in σ_A. Returns: scores [ny, nx] float64, ys [ny] and xs [nx] int64 (the centres' rows and
        columns).
    """
    s = np.asarray(stack)
    if s.ndim != 4 or s.dtype != np.uint8:
        raise ValueError(f"stack must be uint8 frames [F, H, W, C], got dtype {s.dtype} and shape {s.shape}")
    n_frames, h, w, _ = s.shape
    if isinstance(frame, bool) or not isinstance(frame, int | np.integer) or not -n_frames <= frame < n_frames:
        raise ValueError(f"frame must be an integer in [{-n_frames}, {n_frames - 1}], got {frame!r}")
    batch = _positive_int("batch", batch)
    _positive("sigma_mask", sigma_mask)
    ys, xs = mask_centres(h, stride), mask_centres(w, stride)
    centres = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)  # [ny·nx, 2] row-major
    current = s[frame]
    blurred = gaussian_blur(current, sigma_blur, truncate)
    q0 = _q_values(q_fn, s[None].copy())  # [1, A]
    scores = np.empty(len(centres), dtype=np.float64)
    for start in range(0, len(centres), batch):
        chunk = centres[start : start + batch]
        stacks = np.repeat(s[None], len(chunk), axis=0)  # [n, F, H, W, C]
        stacks[:, frame] = perturb_frame(current, blurred, chunk, sigma_mask)
        q = _q_values(q_fn, stacks)
        if q.shape[1] != q0.shape[1]:
            raise ValueError(f"q_fn returned {q.shape[1]} actions for a batch, {q0.shape[1]} for the clean stack")
        scores[start : start + len(chunk)] = 0.5 * ((q - q0) ** 2).sum(axis=1)
    return scores.reshape(len(ys), len(xs)), ys, xs


def interpolate_grid(scores: np.ndarray, ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of grid values `scores` [ny, nx], located at pixel rows `ys` [ny] and columns `xs` [nx]
    (increasing), to every pixel of an [H, W] map; beyond the outermost centres the nearest value is kept.
    Returns [H, W] float64."""
    g = np.asarray(scores, dtype=np.float64)
    if g.shape != (len(ys), len(xs)):
        raise ValueError(f"scores must have shape (len(ys), len(xs)) = {(len(ys), len(xs))}, got {g.shape}")
    h, w = shape
    rows = np.stack([np.interp(np.arange(w), xs, g[i]) for i in range(len(ys))])  # [ny, W]
    return np.stack([np.interp(np.arange(h), ys, rows[:, j]) for j in range(w)], axis=1)  # [H, W]


def perturbation_saliency(
    stack: np.ndarray,
    q_fn: QFn,
    stride: int = 5,
    sigma_blur: float = 3.0,
    sigma_mask: float = 5.0,
    frame: int = -1,
    batch: int = 64,
    truncate: float = 4.0,
) -> np.ndarray:
    """Greydanus perturbation saliency of frame `frame` of `stack` [F, H, W, C] uint8: the grid of
    `perturbation_grid` (same arguments) interpolated bilinearly to the frame. Returns [H, W] float64 >= 0."""
    scores, ys, xs = perturbation_grid(stack, q_fn, stride, sigma_blur, sigma_mask, frame, batch, truncate)
    return interpolate_grid(scores, ys, xs, stack.shape[1:3])


def attention_overlay(
    weights: np.ndarray,
    key_patch: Sequence[int] | np.ndarray,
    frame_shape: tuple[int, int] = (96, 96),
    patch_px: int = 8,
) -> np.ndarray:
    """Per-head attention maps on the frame (the thesis's eq. 5.1).

    Per head: the weights averaged over the query tokens, restricted to the keys that are patches, min–max
    normalised over those keys (a head whose patch keys all carry one value gets 0 everywhere: no contrast), and each
    key's value painted on its patch (patch p at row p // (W/patch_px), column p % (W/patch_px), row-major). Pixels of
    patches no key refers to are 0.

    Args: weights [heads, queries, keys] float; key_patch [keys] int, the patch index of each key, −1 for a key that
        is no patch ([cls], padded slots); frame_shape (H, W), both divisible by patch_px. Returns [heads, H, W]
        float64 in [0, 1].
    """
    att = np.asarray(weights, dtype=np.float64)
    if att.ndim != 3 or att.shape[1] == 0 or not np.all(np.isfinite(att)):
        raise ValueError(f"weights must be finite [heads, queries >= 1, keys], got shape {att.shape}")
    kp = np.asarray(key_patch)
    if kp.shape != (att.shape[2],) or (kp.size and not np.issubdtype(kp.dtype, np.integer)):
        raise ValueError(f"key_patch must be {att.shape[2]} integers (one per key), got {kp.dtype} {kp.shape}")
    rows, cols = _patch_grid(frame_shape, patch_px)
    is_patch = kp >= 0
    patches = kp[is_patch].astype(np.int64)
    if np.any(kp < -1) or np.any(patches >= rows * cols):
        raise ValueError(f"key_patch values must be -1 (no patch) or a patch index in [0, {rows * cols}), got {kp}")
    if len(np.unique(patches)) != len(patches):
        raise ValueError(f"key_patch maps several keys to one patch: {kp}")
    mean = att.mean(axis=1)[:, is_patch]  # [heads, K_patch]
    grid = np.zeros((att.shape[0], rows * cols), dtype=np.float64)
    if patches.size:
        lo, hi = mean.min(axis=1, keepdims=True), mean.max(axis=1, keepdims=True)
        span = hi - lo
        grid[:, patches] = np.where(span > 0, (mean - lo) / np.where(span > 0, span, 1.0), 0.0)
    grid = grid.reshape(-1, rows, cols)
    return np.repeat(np.repeat(grid, patch_px, axis=1), patch_px, axis=2)


def alpha_blend(
    frame: np.ndarray, saliency: np.ndarray, alpha: float = 0.6, color: tuple[int, int, int] = (255, 0, 0)
) -> np.ndarray:
    """out = frame·(1 − α·m) + color·α·m per pixel, rounded half to even, as uint8.

    Args: frame [H, W, 3] uint8; saliency [H, W] map m in [0, 1]; alpha in [0, 1]; color an RGB triple in 0..255.
    Returns: [H, W, 3] uint8.
    """
    f = np.asarray(frame)
    m = np.asarray(saliency, dtype=np.float64)
    if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 [H, W, 3], got dtype {f.dtype} and shape {f.shape}")
    if m.shape != f.shape[:2] or not np.all(np.isfinite(m)) or m.min(initial=0) < 0 or m.max(initial=0) > 1:
        raise ValueError(f"saliency must be [H, W] = {f.shape[:2]} with values in [0, 1], got shape {m.shape}")
    if not (isinstance(alpha, int | float) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    c = np.asarray(color, dtype=np.float64)
    if c.shape != (3,) or np.any(c < 0) or np.any(c > 255):
        raise ValueError(f"color must be an RGB triple in 0..255, got {color!r}")
    a = alpha * m[..., None]
    return np.clip(np.rint(f * (1.0 - a) + c * a), 0, 255).astype(np.uint8)


def _patch_grid(shape: tuple[int, int], patch_px: int) -> tuple[int, int]:
    patch_px = _positive_int("patch_px", patch_px)
    h, w = shape
    if h < 1 or w < 1 or h % patch_px or w % patch_px:
        raise ValueError(f"shape {shape} must be positive and divisible by patch_px={patch_px}")
    return h // patch_px, w // patch_px


def mass_share(saliency: np.ndarray, region_mask: np.ndarray) -> float:
    """Σ saliency inside the region / Σ saliency: the share of a map's mass on a region ("measured, not only drawn").

    Args: saliency [H, W] finite, >= 0; region_mask [H, W] bool. Returns: a float in [0, 1]; NaN when the map's total
    is 0 (nothing to share).
    """
    s = np.asarray(saliency, dtype=np.float64)
    r = np.asarray(region_mask)
    if s.ndim != 2 or r.shape != s.shape or r.dtype != bool:
        raise ValueError(f"saliency [H, W] and region_mask bool of one shape, got {s.shape} and {r.dtype} {r.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("saliency must be finite and >= 0")
    total = s.sum()
    return float("nan") if total == 0 else float(s[r].sum() / total)


def box_mask(shape: tuple[int, int], boxes: Iterable[Sequence[int]]) -> np.ndarray:
    """The union of boxes (x, y, w, h) in pixel coordinates: columns x … x+w−1, rows y … y+h−1, clipped to the frame
    (a box partly or wholly outside covers only its part inside; w or h = 0 covers nothing).

    Args: shape (H, W); boxes integer-valued (x, y, w, h) with w, h >= 0. Returns: [H, W] bool.
    """
    h, w = shape
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive (H, W), got {shape}")
    mask = np.zeros((h, w), dtype=bool)
    for box in boxes:
        b = np.asarray(box, dtype=np.float64)
        if b.shape != (4,) or not np.all(np.isfinite(b)) or np.any(b != np.round(b)) or b[2] < 0 or b[3] < 0:
            raise ValueError(f"each box must be integers (x, y, w, h) with w, h >= 0, got {box!r}")
        x, y, bw, bh = (int(v) for v in b)
        mask[max(y, 0) : max(y + bh, 0), max(x, 0) : max(x + bw, 0)] = True
    return mask


def patch_mask(shape: tuple[int, int], patches: Iterable[int], patch_px: int = 8) -> np.ndarray:
    """The pixels of the given patches: patch p (row-major on the frame's grid of patch_px-sized patches) covers
    rows (p // (W/patch_px))·patch_px + [0, patch_px) and columns (p % (W/patch_px))·patch_px + [0, patch_px).

    Args: shape (H, W) divisible by patch_px; patches indices in [0, H·W/patch_px²). Returns: [H, W] bool.
    """
    rows, cols = _patch_grid(shape, patch_px)
    p = np.asarray(list(patches))
    if p.size and (not np.issubdtype(p.dtype, np.integer) or p.min() < 0 or p.max() >= rows * cols):
        raise ValueError(f"patches must be integer indices in [0, {rows * cols}), got {p}")
    grid = np.zeros(rows * cols, dtype=bool)
    grid[p.astype(np.int64)] = True
    return np.repeat(np.repeat(grid.reshape(rows, cols), patch_px, axis=0), patch_px, axis=1)
