"""Reconstruction error map E (SPEC §4) and the selected-patch frame embedding (SPEC §7).

Every error-map pass runs its decoder sequences (one per frame and target patch, 145 tokens each at 96x96) in
chunks of at most `ErrorMapSettings.max_sequences`, derived from runtime.saliency_memory_mb, so that the
memory of a call does not grow with the number of frames it is given (mr estimation, figures, training,
evaluation of 50 envs at once).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from spirl.common.runtime import autocast_dtype
from spirl.params import ERROR_SPACES  # saliency.error_space
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder, normalized_patches, patchify

if TYPE_CHECKING:
    from spirl.params import Params

FP32_BYTES = 4


def decoder_sequence_bytes(config: MAEConfig) -> int:
    """Upper estimate of the live activation bytes of one decoder sequence inside one block (fp32).

    L = N + 1 tokens of width D: the block's input, norm, q/k/v, attention output, projection and residual
    (8 L·D), the MLP's hidden layer before and after GELU (2·mlp_ratio·L·D), and the scores and softmax of a
    non-fused attention (2·heads·L²). 96x96 Tab. 4 MAE: 2.53 MB.
    """
    tokens, width = config.num_patches + 1, config.decoder_dim
    return FP32_BYTES * (tokens * width * (8 + 2 * config.mlp_ratio) + 2 * config.decoder_heads * tokens ** 2)


def max_sequences_for(config: MAEConfig, memory_mb: int) -> int:
    """Decoder sequences one pass may hold within memory_mb (runtime.saliency_memory_mb); at least 1."""
    count = memory_mb * 2 ** 20 // decoder_sequence_bytes(config)
    if count < 1:
        need = decoder_sequence_bytes(config)
        raise ValueError(f"runtime.saliency_memory_mb = {memory_mb} holds no decoder sequence of {need} bytes; "
                         f"allowed: >= {need / 2**20:.1f}")
    return int(count)


@dataclass(frozen=True)
class ErrorMapSettings:
    """How error maps are computed.

    space: "normalized" (released code: MSE of normalised pixels) or "raw" (the paper: MSE in [0, 1] pixels,
        = the normalised error x (the patch's unbiased variance + norm_pix_eps)), saliency.error_space.
    max_sequences: decoder sequences per pass (max_sequences_for(runtime.saliency_memory_mb)).
    dtype: autocast dtype (None = fp32; runtime.saliency_precision).
    """

    space: str
    max_sequences: int
    dtype: torch.dtype | None

    def __post_init__(self) -> None:
        if self.space not in ERROR_SPACES:
            raise ValueError(f"saliency.error_space must be one of {ERROR_SPACES}, got {self.space!r}")
        if isinstance(self.max_sequences, bool) or not isinstance(self.max_sequences, int) or self.max_sequences < 1:
            raise ValueError(f"max_sequences must be a positive integer, got {self.max_sequences!r}")


def error_map_settings(params: Params, model: MaskedAutoencoder) -> ErrorMapSettings:
    """The error-map settings of a job: saliency.error_space, runtime.saliency_memory_mb and _precision."""
    return ErrorMapSettings(params.saliency.error_space,
                            max_sequences_for(model.config, params.runtime.saliency_memory_mb),
                            autocast_dtype(params.runtime, _device(model), "saliency"))


def neighbourhood_groups(grid: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Patches grouped by their number k of 8-neighbours inside the grid (patch index = row·grid + col).

    Args: grid patches per side (>= 1).
    Returns: list of (targets LongTensor [n_t] ascending, visible LongTensor [n_t, k] ascending rows),
        ordered by k ascending (grid >= 3: k = 3 corners, 5 edges, 8 interior; grid 2: all 3; grid 1: 0).
    """
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    by_count: dict[int, tuple[list[int], list[list[int]]]] = {}
    for row in range(grid):
        for col in range(grid):
            visible = [r * grid + c
                       for r in range(max(row - 1, 0), min(row + 2, grid))
                       for c in range(max(col - 1, 0), min(col + 2, grid))
                       if (r, c) != (row, col)]
            targets, lists = by_count.setdefault(len(visible), ([], []))
            targets.append(row * grid + col)
            lists.append(visible)
    return [(torch.tensor(targets, dtype=torch.long),
             torch.tensor(lists, dtype=torch.long).reshape(len(targets), k))
            for k, (targets, lists) in sorted(by_count.items())]


def frames_to_tensor(frames: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 frames to float images in [0, 1].

    Args: frames uint8 [B, H, W, C] (numpy or torch). Returns: float32 [B, C, H, W] on device.
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"frames must be uint8 [B, H, W, C], got {x.dtype} {tuple(x.shape)}")
    return x.to(device).permute(0, 3, 1, 2).float() / 255.0


def _device(model: MaskedAutoencoder) -> torch.device:
    """The device the model's parameters live on."""
    return next(model.parameters()).device


@contextlib.contextmanager
def _inference(model: MaskedAutoencoder) -> Iterator[None]:
    """no_grad with the model in eval mode; its previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to dtype when one other than float32 is requested, else nothing."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _check_images(model: MaskedAutoencoder, imgs: torch.Tensor) -> None:
    """Raise ValueError unless imgs [B, C, H, W] match the model's channels and image size."""
    c = model.config
    if tuple(imgs.shape[1:]) != (c.in_chans, c.img_size, c.img_size):
        raise ValueError(f"frames of shape {tuple(imgs.shape[1:])} (C, H, W) do not match the model "
                         f"({c.in_chans}, {c.img_size}, {c.img_size})")


def _pair_predictions(model: MaskedAutoencoder, embedded: torch.Tensor, frame_idx: torch.Tensor,
                      targets: torch.Tensor, visible: torch.Tensor, max_sequences: int) -> torch.Tensor:
    """Predictions of S (frame, target) pairs with equal neighbour counts, in passes of <= max_sequences sequences.

    Args: embedded [B, N, D] (model.embed of all patches); frame_idx [S]; targets [S] patch indices; visible [S, k]
        each target's neighbours (ascending).
    Returns: float32 [S, P] (normalised-pixel space).
    """
    tokens = embedded[frame_idx[:, None], visible]  # [S, k, D]
    pred = torch.empty(len(targets), model.config.patch_dim, device=embedded.device)  # [S, P]
    for start in range(0, len(targets), max_sequences):
        part = slice(start, start + max_sequences)
        pred[part] = model.decode_rows(model.encode(tokens[part]), visible[part], targets[part]).float()
    return pred


def _group_predictions(model: MaskedAutoencoder, embedded: torch.Tensor, targets: torch.Tensor,
                       visible: torch.Tensor, max_sequences: int) -> torch.Tensor:
    """Predictions of one neighbour-count group's targets for all frames (frame-major sequences).

    Args: embedded [B, N, D]; targets [n_t]; visible [n_t, k]. Returns: float32 [B, n_t, P].
    """
    b, n_t = embedded.shape[0], len(targets)
    frame_idx = torch.arange(b, device=embedded.device).repeat_interleave(n_t)  # [B·n_t]
    pred = _pair_predictions(model, embedded, frame_idx, targets.repeat(b), visible.repeat(b, 1), max_sequences)
    return pred.reshape(b, n_t, model.config.patch_dim)


def surroundings_predictions(model: MaskedAutoencoder, frames: np.ndarray | torch.Tensor,
                             max_sequences: int) -> torch.Tensor:
    """Every patch as the MAE rebuilds it from its 8 neighbours only (Fig. 2, second column).

    Args: frames uint8 [B, H, W, C]; max_sequences decoder sequences per pass.
    Returns: float32 [B, N, P] in normalised-pixel space.
    """
    device = _device(model)
    groups = [(t.to(device), v.to(device)) for t, v in neighbourhood_groups(model.config.grid)]
    with _inference(model):
        imgs = frames_to_tensor(frames, device)  # [B, C, H, W]
        _check_images(model, imgs)
        embedded = model.embed(patchify(imgs, model.config.patch_size))  # [B, N, D]
        pred = torch.empty(len(imgs), model.config.num_patches, model.config.patch_dim, device=device)
        for targets, visible in groups:
            pred[:, targets] = _group_predictions(model, embedded, targets, visible, max_sequences)
    return pred


def error_map(model: MaskedAutoencoder, frames: np.ndarray | torch.Tensor, settings: ErrorMapSettings,
              recompute: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
    """Reconstruction error of every patch predicted from its 8 neighbours only (SPEC §4).

    The (frame, target) sequences of one neighbour-count group run as batches of <= settings.max_sequences.
    E_t = mean over the patch's P values of (prediction - normalised target)² ("normalized"), times the patch's
    unbiased pixel variance + norm_pix_eps for "raw" (the same error in [0, 1] pixel units).
    Args: frames uint8 [B, H, W, C]; recompute [B, N] bool: only these targets (None: all). E_t depends only on
        the pixels of t's 3x3 block of patches (spirl.saliency.incremental reuses the rest).
    Returns: float32 [B, N] on the model's device, E[b, row·grid + col]; NaN where recompute is False.
    """
    device, c = _device(model), model.config
    groups = [(t.to(device), v.to(device)) for t, v in neighbourhood_groups(c.grid)]
    with _inference(model):
        imgs = frames_to_tensor(frames, device)  # [B, C, H, W]
        _check_images(model, imgs)
        patches = patchify(imgs, c.patch_size)  # [B, N, P]
        errors = torch.full(patches.shape[:2], torch.nan, dtype=torch.float32, device=device)  # [B, N]
        wanted = None if recompute is None else torch.as_tensor(recompute, device=device)  # [B, N] bool
        with _autocast(device, settings.dtype):
            embedded = model.embed(patches)  # [B, N, D]
            for targets, visible in groups:
                if wanted is None:
                    pred = _group_predictions(model, embedded, targets, visible, settings.max_sequences)
                    errors[:, targets] = patch_errors(pred, patches[:, targets], settings.space, c.norm_pix_eps)
                    continue
                frame_idx, j = torch.nonzero(wanted[:, targets], as_tuple=True)  # [S] pairs, frame-major
                if len(j) == 0:
                    continue
                pred = _pair_predictions(model, embedded, frame_idx, targets[j], visible[j], settings.max_sequences)
                mine = patches[frame_idx, targets[j]][:, None]  # [S, 1, P]
                errors[frame_idx, targets[j]] = patch_errors(pred[:, None], mine, settings.space, c.norm_pix_eps)[:, 0]
    return errors


def patch_errors(pred: torch.Tensor, patches: torch.Tensor, space: str, eps: float) -> torch.Tensor:
    """E per patch from normalised-pixel predictions (SPEC §4, §12 #4).

    normalized: mean_P (pred - t)², t = (x - mean) / sqrt(var + eps) the normalised target;
    raw: the same error in [0, 1] pixel units, mean_P (pred·sqrt(var + eps) + mean - x)² = normalized x (var + eps).
    Args: pred [B, n, P] float32; patches [B, n, P] pixels in [0, 1]; space "normalized" | "raw".
    Returns: [B, n] float32.
    """
    err = ((pred - normalized_patches(patches, eps)) ** 2).mean(dim=-1)
    if space == "normalized":
        return err
    if space == "raw":
        return err * (patches.var(dim=-1, unbiased=True) + eps)
    raise ValueError(f"saliency.error_space must be one of {ERROR_SPACES}, got {space!r}")


def in_space(errors: np.ndarray, variances: np.ndarray, space: str, eps: float) -> np.ndarray:
    """Error maps [F, N] in saliency.error_space from normalised errors and patch variances (SPEC §12 #4)."""
    if space == "normalized":
        return errors
    if space == "raw":
        return errors * (variances + np.float32(eps))
    raise ValueError(f"saliency.error_space must be 'normalized' or 'raw', got {space!r}")


def embed_selected(model: MaskedAutoencoder, frames: np.ndarray | torch.Tensor,
                   indices: np.ndarray | torch.Tensor, counts: np.ndarray | torch.Tensor,
                   k_max: int) -> torch.Tensor:
    """SPEC §7 frame embedding: encode [cls] + the selected patches, drop cls, add pos-embed again, zero-pad.

    Args: frames uint8 [B, H, W, C]; indices [B, k_max] patch indices in row order (entries from
        counts[b] on are padding and ignored); counts [B] selected patches per frame (0..k_max).
    Returns: float32 [B, k_max, enc_dim] on the model's device, rows past counts[b] exactly 0.
    """
    device = _device(model)
    n = model.config.num_patches
    idx = torch.as_tensor(indices).to(device=device, dtype=torch.long)  # [B, k_max]
    cnt = torch.as_tensor(counts).to(device=device, dtype=torch.long)  # [B]
    b = len(frames)
    if idx.shape != (b, k_max) or cnt.shape != (b,):
        raise ValueError(f"indices {tuple(idx.shape)} / counts {tuple(cnt.shape)} do not match [{b}, {k_max}]")
    if cnt.numel() and (cnt.min() < 0 or cnt.max() > k_max):
        raise ValueError(f"counts must lie in [0, {k_max}]")
    valid = torch.arange(k_max, device=device)[None, :] < cnt[:, None]  # [B, k_max]
    safe = torch.where(valid, idx, 0)  # [B, k_max]
    if safe.numel() and (safe.min() < 0 or safe.max() >= n):
        raise ValueError(f"selected patch indices must lie in [0, {n})")
    imgs = frames_to_tensor(frames, device)  # [B, C, H, W]
    _check_images(model, imgs)
    if k_max == 0:
        return torch.zeros(b, 0, model.config.encoder_dim, device=device)
    with _inference(model):
        embedded = model.embed(patchify(imgs, model.config.patch_size))  # [B, N, D]
        tokens = torch.gather(embedded, 1, safe[..., None].expand(-1, -1, embedded.shape[-1]))  # [B, k_max, D]
        out = model.encode(tokens, valid)[:, 1:] + model.encoder_pos_embed[0, 1:][safe]  # [B, k_max, D]
        return torch.where(valid[..., None], out.float(), 0.0)


def error_map_reference(model: MaskedAutoencoder, frame: np.ndarray) -> torch.Tensor:
    """The naive baseline (as the released code runs it): one frame, one full pass per target patch, fp32.

    For benchmarks only (bench/saliency.py compares error_map against it). Args: frame uint8 [H, W, C].
    Returns: float32 [N].
    """
    device = _device(model)
    c = model.config
    out = torch.empty(c.num_patches, device=device)
    with _inference(model):
        patches = patchify(frames_to_tensor(frame[None], device), c.patch_size)  # [1, N, P]
        target = normalized_patches(patches, c.norm_pix_eps)[0]  # [N, P]
        embedded = model.embed(patches)  # [1, N, D]
        for targets, visible in neighbourhood_groups(c.grid):
            for t, vis in zip(targets.tolist(), visible.to(device), strict=True):
                pred = model.decode(model.encode(embedded[:, vis]), vis[None])[0, t]  # [P]
                out[t] = ((pred - target[t]) ** 2).mean()
    return out
