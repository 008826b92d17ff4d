"""MLR cube masks (SPEC §15.2, conformance test 1): counts, cubes, independence, upsampling, scale, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.agents.mlr.masking import (
    MASK_SCALES,
    apply_masks,
    cube_masks,
    draw_masks,
    grid_size,
    kept_cells,
    pixel_masks,
)

CELLS = 49  # 7 × 7 cells of 12 px on an 84 px image
KEPT = 24  # int(0.5 · 49) cells of each cube are 1 (kept) ...
ZEROED = 25  # ... and the other 25 are 0 (masked)


def test_defaults_give_the_spec_geometry():
    assert grid_size() == 7 and grid_size(84, 12) == 7 and grid_size(96, 8) == 12
    assert kept_cells(0.5, CELLS) == KEPT
    assert kept_cells(0.3, CELLS) == 14  # int(14.7), as the released code truncates
    assert kept_cells(0.0, CELLS) == 0 and kept_cells(1.0, CELLS) == CELLS
    assert MASK_SCALES == ("faithful", "normalized")


@pytest.mark.parametrize("seed", range(20))
def test_each_cube_keeps_24_cells_and_zeroes_25(seed):
    masks = cube_masks(np.random.default_rng(seed))  # [16, 7, 7]
    assert masks.shape == (16, 7, 7) and masks.dtype == np.float32
    assert set(np.unique(masks).tolist()) <= {0.0, 1.0}
    for cube in (masks[:8], masks[8:]):
        # the 8 steps of a cube share one spatial mask
        assert (cube == cube[0]).all()
        assert int(cube[0].sum()) == KEPT
        assert int((cube[0] == 0).sum()) == ZEROED


def test_other_shapes_keep_int_ratio_cells_per_cube():
    masks = cube_masks(np.random.default_rng(3), steps=12, depth=4, ratio=0.3, grid=5)  # 3 cubes of 4 steps
    assert masks.shape == (12, 5, 5)
    for k in range(3):
        cube = masks[4 * k:4 * (k + 1)]
        assert (cube == cube[0]).all() and int(cube[0].sum()) == int(0.3 * 25)
    assert (cube_masks(np.random.default_rng(0), ratio=1.0) == 1).all()
    assert (cube_masks(np.random.default_rng(0), ratio=0.0) == 0).all()


def test_cubes_are_independent_and_cells_uniform():
    """Over 2,000 seeded draws: P(cube 1 cell = cube 2 cell) = (24/49)² + (25/49)² and P(keep) = 24/49 per cell.

    Tolerances: the agreement rate pools 98,000 cell pairs (σ ≈ 0.0016): ±0.01 is > 6σ, while shared or mirrored
    cubes would give 1.0 or far below 0.5. Each cell's keep frequency pools 4,000 cubes (σ ≈ 0.0079): ±0.04 is 5σ.
    """
    rng = np.random.default_rng(12345)
    draws = np.stack([cube_masks(rng) for _ in range(2000)])  # [2000, 16, 7, 7]
    first, second = draws[:, 0].reshape(2000, CELLS), draws[:, 8].reshape(2000, CELLS)  # [2000, 49]
    expected = (KEPT / CELLS) ** 2 + (ZEROED / CELLS) ** 2  # 0.50021
    agreement = float((first == second).mean())
    assert abs(agreement - expected) < 0.01, agreement
    # joint P(both kept) = (24/49)², as independence requires
    assert abs(float((first * second).mean()) - (KEPT / CELLS) ** 2) < 0.01
    keep_freq = np.concatenate([first, second]).mean(axis=0)  # [49]
    assert np.abs(keep_freq - KEPT / CELLS).max() < 0.04, keep_freq
    # successive draws differ (one permutation per cube, never reused)
    assert (first[1:] != first[:-1]).any(axis=1).mean() > 0.99


def test_pixel_masks_upsample_each_cell_to_a_12px_block():
    cells = cube_masks(np.random.default_rng(7))  # [16, 7, 7]
    pixels = pixel_masks(cells)  # [16, 84, 84]
    assert isinstance(pixels, torch.Tensor) and pixels.shape == (16, 84, 84) and pixels.dtype == torch.float32
    for i in range(7):
        for j in range(7):
            block = pixels[:, 12 * i:12 * (i + 1), 12 * j:12 * (j + 1)]  # [16, 12, 12]
            assert torch.equal(block, torch.from_numpy(cells[:, i, j])[:, None, None].expand(16, 12, 12))
    # draw_masks is cube_masks then pixel_masks on the same draws
    assert torch.equal(draw_masks(np.random.default_rng(7)), pixels)
    assert int((pixels[0] == 0).sum()) == ZEROED * 144


def test_same_seed_same_masks_and_other_seed_other_masks():
    a = cube_masks(np.random.default_rng(42))
    b = cube_masks(np.random.default_rng(42))
    c = cube_masks(np.random.default_rng(43))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_masking_leaves_the_global_rng_alone():
    state = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global state is what must stay put)
    draw_masks(np.random.default_rng(0))
    assert np.array_equal(np.random.get_state()[1], state)  # noqa: NPY002


def _obs(batch=3, steps=16, frames=4, seed=0):
    """Raw uint8 windows [B, T, F, 84, 84] with values in 1..255 (no zero, so masked pixels are recognisable)."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(1, 256, size=(batch, steps, frames, 84, 84), dtype=np.uint8))


def test_faithful_scale_keeps_0_255_and_zeroes_exactly_the_masked_cells():
    obs = _obs()  # [3, 16, 4, 84, 84] uint8
    masks = draw_masks(np.random.default_rng(1))  # [16, 84, 84]
    out = apply_masks(obs, masks, "faithful")
    assert out.dtype == torch.float32 and out.shape == obs.shape
    assert float(out.max()) <= 255.0 and float(out.max()) > 1.0  # 0–255 scale, not 0–1
    kept = masks.bool()[None, :, None].expand_as(out)  # [B, T, F, 84, 84]
    assert torch.equal(out[kept], obs.float()[kept])  # kept pixels untouched
    assert (out[~kept] == 0).all()
    # zeros exactly where the cells are 0: the same pattern for every sample, every stacked frame, within a cube
    zero = out == 0  # [B, T, F, H, W]
    assert torch.equal(zero, (masks == 0)[None, :, None].expand_as(zero))
    assert torch.equal(zero[:, :8], zero[:, :1].expand(-1, 8, -1, -1, -1))
    assert torch.equal(zero[:, 8:], zero[:, 8:9].expand(-1, 8, -1, -1, -1))
    assert not torch.equal(zero[:, 0], zero[:, 8])  # the two cubes differ (for this seed)
    per_image = zero[:, :, :, ::12, ::12].float().sum(dim=(-1, -2))  # [B, T, F] zeroed cells per image
    assert (per_image == ZEROED).all()


def test_normalized_scale_is_faithful_over_255():
    obs = _obs(batch=2)
    masks = draw_masks(np.random.default_rng(2))
    faithful = apply_masks(obs, masks, "faithful")
    normalized = apply_masks(obs, masks, "normalized")
    assert normalized.dtype == torch.float32
    assert torch.equal(normalized, faithful / 255.0)
    assert float(normalized.max()) <= 1.0


def test_float_input_keeps_its_dtype():
    obs = _obs(batch=1).to(torch.float64)
    masks = draw_masks(np.random.default_rng(3))
    out = apply_masks(obs, masks, "faithful")
    assert out.dtype == torch.float64 and torch.equal(out, obs * masks[None, :, None].double())
    assert torch.equal(apply_masks(obs, masks, "normalized"), obs / 255.0 * masks[None, :, None].double())


def test_bad_arguments_raise_value_errors_naming_them():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="steps"):
        cube_masks(rng, steps=12, depth=8)  # T not a multiple of the cube depth
    with pytest.raises(ValueError, match="depth"):
        cube_masks(rng, steps=16, depth=0)
    with pytest.raises(ValueError, match="ratio"):
        cube_masks(rng, ratio=1.5)
    with pytest.raises(ValueError, match="generator"):
        cube_masks(np.random.RandomState(0))
    with pytest.raises(ValueError, match="image_px"):
        draw_masks(rng, image_px=84, patch_px=10)
    with pytest.raises(ValueError, match="patch_px"):
        grid_size(84, 0)
    with pytest.raises(ValueError, match="cell_masks"):
        pixel_masks(np.zeros((16, 7, 6)))
    obs, masks = _obs(batch=1), draw_masks(rng)
    with pytest.raises(ValueError, match="scale"):
        apply_masks(obs, masks, "raw")
    with pytest.raises(ValueError, match="masks"):
        apply_masks(obs, masks[:8], "faithful")
    with pytest.raises(ValueError, match="obs"):
        apply_masks(obs[0], masks, "faithful")
