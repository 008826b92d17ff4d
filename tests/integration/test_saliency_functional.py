"""Functional check of the method: after a short CPU pre-training on synthetic frames (a fixed texture
plus moving sprites), the sprites' patches have the largest errors and dynamic-K keeps them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.params import REPO_ROOT, load_params, replace
from spirl.saliency.error_maps import ErrorMapSettings, error_map
from spirl.saliency.pretrain import new_run, train_epoch
from spirl.saliency.selection import dynamic_k

SIZE, PATCH, SPRITE = 48, 8, 8


def background() -> np.ndarray:
    """A fixed, locally predictable texture: diagonal colour stripes [H, W, 3] uint8."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    phase = (x + y) % 8 / 8.0
    img = np.stack([80 + 60 * phase, 120 + 40 * np.cos(2 * np.pi * phase), 160 - 50 * phase], axis=-1)
    return img.astype(np.uint8)


def synthetic_frames(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Frames with 2 saturated sprites at random places, and the per-pixel sprite masks [n, H, W]."""
    frames = np.repeat(background()[None], n, axis=0)
    masks = np.zeros((n, SIZE, SIZE), bool)
    colours = np.array([[255, 30, 30], [30, 255, 30]], np.uint8)
    for i in range(n):
        for colour in colours:
            r, c = rng.integers(0, SIZE - SPRITE + 1, size=2)
            frames[i, r:r + SPRITE, c:c + SPRITE] = colour
            masks[i, r:r + SPRITE, c:c + SPRITE] = True
    return frames, masks


def sprite_pixels_per_patch(masks: np.ndarray) -> np.ndarray:
    """Sprite pixels in each patch [n, N] (patches row-major)."""
    grid = SIZE // PATCH
    return masks.reshape(len(masks), grid, PATCH, grid, PATCH).sum(axis=(2, 4)).reshape(len(masks), -1)


@pytest.fixture(scope="module")
def trained_model():
    torch.manual_seed(0)
    params = load_params([REPO_ROOT / "params.yaml"])
    mae = replace(params.mae, epochs=6, warmup_epochs=1, batch_size=32, base_lr=4.0e-3)
    frames, _ = synthetic_frames(1024, np.random.default_rng(0))
    run = new_run(mae, SIZE, {"init": 1, "sample": 2, "mask": 3}, torch.device("cpu"))
    first = None
    while run.epoch < mae.epochs:
        row = train_epoch(run, frames, mae, autocast_dtype=None)
        first = first or row["loss"]
    assert row["loss"] < 0.5 * first, run.history  # it learned something
    return run.model.eval()


def test_sprites_have_the_largest_errors_and_dynamic_k_keeps_them(trained_model):
    frames, masks = synthetic_frames(16, np.random.default_rng(123))
    errors = error_map(trained_model, frames, ErrorMapSettings("normalized", 4096, None)).numpy()  # [16, N]
    pixels = sprite_pixels_per_patch(masks)
    for i in range(len(frames)):
        sprite = pixels[i] >= PATCH * PATCH // 4  # clearly sprite patches
        clean = pixels[i] == 0  # pure background patches
        assert errors[i][sprite].min() > errors[i][clean].max(), (i, errors[i], pixels[i])
        kept = set(dynamic_k(errors[i], k_max=errors.shape[1]).tolist())
        assert set(np.flatnonzero(sprite).tolist()) <= kept
