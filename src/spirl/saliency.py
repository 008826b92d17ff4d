"""Reconstruction error map E (SPEC §4) and the selected-patch frame embedding (SPEC §7)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from spirl.mae import MaskedAutoencoder, normalized_patches, patchify


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


def _group_predictions(model: MaskedAutoencoder, embedded: torch.Tensor, targets: torch.Tensor,
                       visible: torch.Tensor) -> torch.Tensor:
    """Predictions of one neighbour-count group's targets, for all frames in one encoder/decoder pass.

    Args: embedded [B, N, D] (model.embed of all patches); targets [n_t]; visible [n_t, k].
    Returns: float32 [B, n_t, P] (normalised-pixel space).
    """
    b, _, d = embedded.shape
    n_t, k = visible.shape
    tokens = embedded[:, visible].reshape(b * n_t, k, d)  # [B·n_t, k, D]
    ids_keep = visible.expand(b, n_t, k).reshape(b * n_t, k)  # [B·n_t, k]
    rows = targets.repeat(b)  # [B·n_t], frame-major like tokens
    pred = model.decode_rows(model.encode(tokens), ids_keep, rows)  # [B·n_t, P]
    return pred.float().reshape(b, n_t, -1)


def surroundings_predictions(model: MaskedAutoencoder, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Every patch as the MAE rebuilds it from its 8 neighbours only (Fig. 2, second column).

    Args: frames uint8 [B, H, W, C]. Returns: float32 [B, N, P] in normalised-pixel space.
    """
    device = _device(model)
    groups = [(t.to(device), v.to(device)) for t, v in neighbourhood_groups(model.config.grid)]
    with _inference(model):
        imgs = frames_to_tensor(frames, device)  # [B, C, H, W]
        _check_images(model, imgs)
        embedded = model.embed(patchify(imgs, model.config.patch_size))  # [B, N, D]
        pred = torch.empty(len(imgs), model.config.num_patches, model.config.patch_dim, device=device)
        for targets, visible in groups:
            pred[:, targets] = _group_predictions(model, embedded, targets, visible)
    return pred


def _error_chunk(model: MaskedAutoencoder, imgs: torch.Tensor, groups: list[tuple[torch.Tensor, torch.Tensor]],
                 dtype: torch.dtype | None) -> torch.Tensor:
    """Error map of one chunk of frames.

    Args: imgs float [B, C, H, W] in [0, 1]. Returns: float32 [B, N].
    """
    patches = patchify(imgs, model.config.patch_size)  # [B, N, P]
    target = normalized_patches(patches, model.config.norm_pix_eps)  # [B, N, P]
    errors = torch.empty(patches.shape[:2], dtype=torch.float32, device=imgs.device)  # [B, N]
    with _autocast(imgs.device, dtype):
        embedded = model.embed(patches)  # [B, N, D]
        for targets, visible in groups:
            pred = _group_predictions(model, embedded, targets, visible)  # [B, n_t, P]
            errors[:, targets] = ((pred - target[:, targets]) ** 2).mean(dim=-1)
    return errors


def error_map(model: MaskedAutoencoder, frames: np.ndarray | torch.Tensor, *,
              dtype: torch.dtype | None = None, chunk_frames: int | None = None) -> torch.Tensor:
    """Reconstruction error of every patch predicted from its 8 neighbours only (SPEC §4).

    Each neighbour-count group of targets of all frames in a chunk runs as one batch of sequences.
    Args: frames uint8 [B, H, W, C]; dtype autocast dtype (e.g. torch.bfloat16) or None for fp32;
        chunk_frames frames per pass (None = all at once).
    Returns: float32 [B, N] on the model's device, E[b, row·grid + col].
    """
    if chunk_frames is not None and (isinstance(chunk_frames, bool) or chunk_frames < 1):
        raise ValueError(f"chunk_frames must be a positive integer or None, got {chunk_frames!r}")
    device = _device(model)
    count = len(frames)
    step = chunk_frames or max(count, 1)
    groups = [(t.to(device), v.to(device)) for t, v in neighbourhood_groups(model.config.grid)]
    out = []
    with _inference(model):
        for start in range(0, count, step):
            imgs = frames_to_tensor(frames[start:start + step], device)  # [b, C, H, W]
            _check_images(model, imgs)
            out.append(_error_chunk(model, imgs, groups, dtype))
    if not out:
        return torch.empty(0, model.config.num_patches, device=device)
    return torch.cat(out)


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
