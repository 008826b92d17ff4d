"""Agent saliency (SPEC §16): Greydanus perturbation maps, attention overlays, mass shares."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spirl.agents.agent_saliency import (
    alpha_blend,
    attention_overlay,
    box_mask,
    gaussian_blur,
    gaussian_kernel1d,
    gaussian_mask,
    interpolate_grid,
    mask_centres,
    mass_share,
    patch_mask,
    perturb_frame,
    perturbation_grid,
    perturbation_saliency,
)

H = W = 96
PATCH_ROW, PATCH_COL = 5, 7  # patch 5·12 + 7 = 67: rows 40..47, columns 56..63
R0, C0 = PATCH_ROW * 8, PATCH_COL * 8
ACTION_WEIGHTS = np.array([1.0, -0.5, 2.0])


def textured_stack(frames: int = 4, seed: int = 0) -> np.ndarray:
    """Black frames; the newest has a bright random texture (values 150..255) on patch 67 only."""
    rng = np.random.default_rng(seed)
    stack = np.zeros((frames, H, W, 3), dtype=np.uint8)
    stack[-1, R0 : R0 + 8, C0 : C0 + 8] = rng.integers(150, 256, size=(8, 8, 3), dtype=np.uint8)
    return stack


def patch_agent(stacks: np.ndarray) -> np.ndarray:
    """Q = mean brightness of patch 67 of the newest frame times a weight per action: [N, 3]."""
    brightness = stacks[:, -1, R0 : R0 + 8, C0 : C0 + 8].astype(np.float64).mean(axis=(1, 2, 3))
    return brightness[:, None] * ACTION_WEIGHTS[None, :]


# --- blur, mask, centres ---------------------------------------------------------------------------------------


def test_kernel_sums_to_one_and_has_the_truncated_radius():
    k = gaussian_kernel1d(3.0)
    assert k.shape == (25,)  # radius ceil(4·3) = 12
    assert k.sum() == pytest.approx(1.0, abs=1e-15)
    assert np.allclose(k, k[::-1]) and k.argmax() == 12
    assert k[13] / k[12] == pytest.approx(math.exp(-1 / 18))
    assert gaussian_kernel1d(0.5, truncate=2.0).shape == (3,)


def test_blur_keeps_a_constant_image_and_its_mean_on_a_ramp():
    const = np.full((20, 17, 3), 77, dtype=np.uint8)
    assert np.allclose(gaussian_blur(const, 3.0), 77.0, atol=1e-12)
    # a linear ramp stays linear away from the border (symmetric kernel), and the blur is per channel
    ramp = np.stack([np.tile(np.arange(40.0), (40, 1)), np.zeros((40, 40))], axis=-1)
    out = gaussian_blur(ramp, 3.0)
    assert np.allclose(out[:, 12:28, 0], ramp[:, 12:28, 0], atol=1e-9)
    assert np.all(out[..., 1] == 0)


def test_blur_matches_a_hand_sum_inside_and_at_the_reflected_border():
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 255, size=(30, 30))
    k = gaussian_kernel1d(2.0)  # radius 8
    out = gaussian_blur(img, 2.0)

    def reflect(i: int, n: int) -> int:  # symmetric reflection, edge pixel repeated: -1 -> 0, -2 -> 1, n -> n-1
        return -i - 1 if i < 0 else (2 * n - 1 - i if i >= n else i)

    for r, c in [(15, 14), (0, 0), (2, 29)]:
        hand = sum(
            k[i + 8] * k[j + 8] * img[reflect(r + i, 30), reflect(c + j, 30)]
            for i in range(-8, 9)
            for j in range(-8, 9)
        )
        assert out[r, c] == pytest.approx(hand, rel=1e-12)


def test_mask_is_one_at_the_centre_and_gaussian_in_distance():
    m = gaussian_mask((96, 96), (40, 30), sigma=5.0)
    assert m[40, 30] == 1.0 and m.argmax() == 40 * 96 + 30
    assert m[43, 34] == pytest.approx(math.exp(-25 / 50))


def test_perturbation_equals_the_hand_computed_mix():
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
    blurred = gaussian_blur(frame, 3.0)
    out = perturb_frame(frame, blurred, np.array([[45, 60], [0, 95]]), sigma_mask=5.0)
    assert out.shape == (2, 96, 96, 3) and out.dtype == np.uint8
    # one pixel 3 rows and 4 columns off the first centre, by hand: blur sum over the kernel, then the mix
    k = gaussian_kernel1d(3.0)
    r, c = 48, 64
    a = sum(
        k[i + 12] * k[j + 12] * frame[r + i, c + j, 1].astype(float) for i in range(-12, 13) for j in range(-12, 13)
    )
    m = math.exp(-(3**2 + 4**2) / (2 * 25))
    assert out[0, r, c, 1] == round(frame[r, c, 1] * (1 - m) + a * m)
    # at the centre the pixel is the blurred one; far from the centre it is untouched
    assert np.array_equal(out[0, 45, 60], np.clip(np.rint(blurred[45, 60]), 0, 255).astype(np.uint8))
    assert np.array_equal(out[0, :10, :10], frame[:10, :10])
    assert np.array_equal(out[1, 0, 95], np.rint(blurred[0, 95]).astype(np.uint8))


def test_grid_centres_for_96_px_stride_5():
    c = mask_centres(96, 5)
    assert c.tolist() == list(range(0, 96, 5)) and len(c) == 20 and c[-1] == 95
    assert mask_centres(80, 5)[-1] == 75 and len(mask_centres(80, 5)) == 16  # Greydanus' 80 px frames
    _, ys, xs = perturbation_grid(textured_stack(), patch_agent, stride=5)
    assert ys.tolist() == xs.tolist() == c.tolist()


# --- perturbation saliency --------------------------------------------------------------------------------------


def test_the_map_peaks_on_the_patch_the_agent_reads_and_is_zero_far_away():
    stack = textured_stack()
    smap = perturbation_saliency(stack, patch_agent)
    assert smap.shape == (H, W) and smap.dtype == np.float64 and np.all(smap >= 0)
    peak_r, peak_c = np.unravel_index(smap.argmax(), smap.shape)
    assert R0 - 3 <= peak_r <= R0 + 10 and C0 - 3 <= peak_c <= C0 + 10
    assert smap.max() > 1.0
    # distance of each pixel from the patch's box; beyond 4σ of the mask plus one grid step every score is exactly 0
    rows, cols = np.arange(H)[:, None], np.arange(W)[None, :]
    dr = np.maximum(np.maximum(R0 - rows, rows - (R0 + 7)), 0)
    dc = np.maximum(np.maximum(C0 - cols, cols - (C0 + 7)), 0)
    far = np.hypot(dr, dc) > 4 * 5.0 + 5 * math.sqrt(2)
    assert far.sum() > 5000
    assert np.all(smap[far] == 0.0)
    # hand check of one grid score: the centre (45, 60) inside the patch
    scores, ys, xs = perturbation_grid(stack, patch_agent)
    pert = perturb_frame(stack[-1], gaussian_blur(stack[-1], 3.0), np.array([[45, 60]]))[0]
    dq = patch_agent(np.stack([stack, np.concatenate([stack[:-1], pert[None]])]))
    assert scores[9, 12] == pytest.approx(0.5 * np.sum((dq[1] - dq[0]) ** 2), rel=1e-12)
    assert scores[9, 12] == pytest.approx(scores.max(), rel=0.3)


def test_an_agent_that_ignores_the_perturbed_frame_has_an_all_zero_map():
    stack = textured_stack()
    stack[0] = stack[-1]  # frame 0 has the same texture, but only the newest (frame -1) is perturbed

    def oldest_only(stacks):
        return stacks[:, 0, R0 : R0 + 8, C0 : C0 + 8].astype(np.float64).mean(axis=(1, 2, 3))[:, None] * ACTION_WEIGHTS

    assert np.all(perturbation_saliency(stack, oldest_only, frame=-1) == 0.0)
    assert perturbation_saliency(stack, oldest_only, frame=0).max() > 1.0


def test_q_fn_gets_the_clean_stack_once_then_batches_of_at_most_batch():
    stack = textured_stack()
    calls: list[np.ndarray] = []

    def recording(stacks):
        calls.append(stacks.copy())
        return patch_agent(stacks)

    perturbation_grid(stack, recording, batch=64)
    assert [len(c) for c in calls] == [1] + [64] * 6 + [16]  # 400 centres
    assert np.array_equal(calls[0][0], stack)
    perturbed = np.concatenate(calls[1:])
    assert perturbed.dtype == np.uint8 and perturbed.shape == (400, 4, H, W, 3)
    assert np.all(perturbed[:, :-1] == stack[None, :-1])  # only the newest frame changes
    # row-major centres: stack 9·20 + 12 was perturbed at (45, 60)
    expected = perturb_frame(stack[-1], gaussian_blur(stack[-1], 3.0), np.array([[45, 60]]))[0]
    assert np.array_equal(perturbed[9 * 20 + 12, -1], expected)
    calls.clear()
    perturbation_grid(stack, recording, stride=10, batch=7)
    assert [len(c) for c in calls] == [1] + [7] * 14 + [2]  # 10·10 centres


def test_interpolation_hits_the_centres_and_is_bilinear_between():
    scores = np.array([[0.0, 10.0], [20.0, 40.0]])
    out = interpolate_grid(scores, np.array([0, 4]), np.array([0, 5]), (6, 8))
    assert out[0, 0] == 0 and out[0, 5] == 10 and out[4, 0] == 20 and out[4, 5] == 40
    assert out[2, 0] == pytest.approx(10.0) and out[0, 1] == pytest.approx(2.0)
    assert out[2, 1] == pytest.approx(0.5 * (2.0 + (20 + 20 / 5)))
    assert out[5, 7] == 40 and out[5, 0] == 20  # beyond the last centre: nearest value


def test_bad_arguments_are_refused_by_name():
    stack = textured_stack()
    with pytest.raises(ValueError, match="stack"):
        perturbation_grid(stack.astype(np.float32), patch_agent)
    with pytest.raises(ValueError, match="frame"):
        perturbation_grid(stack, patch_agent, frame=4)
    with pytest.raises(ValueError, match="batch"):
        perturbation_grid(stack, patch_agent, batch=0)
    with pytest.raises(ValueError, match="stride"):
        perturbation_grid(stack, patch_agent, stride=0)
    with pytest.raises(ValueError, match="sigma"):
        perturbation_grid(stack, patch_agent, sigma_blur=0.0)
    with pytest.raises(ValueError, match="q_fn"):
        perturbation_grid(stack, lambda s: np.zeros(len(s)))


# --- attention overlay ------------------------------------------------------------------------------------------


def test_attention_overlay_places_the_normalised_query_average_on_the_patches():
    # 2 heads, 2 queries, keys: [cls], patch 0, patch 13, patch 143, padded
    w = np.array(
        [
            [[0.5, 0.1, 0.2, 0.2, 0.0], [0.1, 0.3, 0.2, 0.4, 0.0]],  # query mean: .3 .2 .2 .3 0
            [[0.2, 0.6, 0.1, 0.1, 0.0], [0.2, 0.2, 0.5, 0.1, 0.0]],  # query mean: .2 .4 .3 .1 0
        ]
    )
    maps = attention_overlay(w, [-1, 0, 13, 143, -1])
    assert maps.shape == (2, 96, 96)
    # head 0 over the patch keys (.2, .2, .3): min .2, max .3 -> 0, 0, 1; head 1 (.4, .3, .1) -> 1, 2/3, 0
    expected = {0: (0.0, 1.0), 13: (0.0, 2 / 3), 143: (1.0, 0.0)}  # patch: (head 0, head 1)
    for p, vals in expected.items():
        r, c = divmod(p, 12)
        for head in (0, 1):
            assert np.allclose(maps[head, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8], vals[head])
    assert maps[1, 0:8, 0:8].min() == 1.0 and maps[1].max() == 1.0
    covered = patch_mask((96, 96), [0, 13, 143])
    assert np.all(maps[:, ~covered] == 0)
    assert maps[0, 95, 95] == 1.0 and maps[0, 8, 8] == 0.0  # patch 143 is the bottom-right one


def test_attention_overlay_constant_head_and_bad_mappings():
    w = np.full((1, 3, 4), 0.25)
    assert np.all(attention_overlay(w, [0, 1, 2, 3]) == 0.0)
    with pytest.raises(ValueError, match="key_patch"):
        attention_overlay(w, [0, 1, 2])
    with pytest.raises(ValueError, match="key_patch"):
        attention_overlay(w, [0, 1, 1, 3])
    with pytest.raises(ValueError, match="key_patch"):
        attention_overlay(w, [0, 1, 2, 144])
    with pytest.raises(ValueError, match="weights"):
        attention_overlay(w[0], [0, 1, 2, 3])


def test_alpha_blend():
    frame = np.full((4, 4, 3), 100, dtype=np.uint8)
    m = np.zeros((4, 4))
    m[0, 0], m[1, 1] = 1.0, 0.5
    out = alpha_blend(frame, m, alpha=0.6, color=(255, 0, 0))
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    assert out[0, 0].tolist() == [round(100 * 0.4 + 255 * 0.6), 40, 40]
    assert out[1, 1].tolist() == [round(100 * 0.7 + 255 * 0.3), 70, 70]
    assert np.array_equal(out[2:, 2:], frame[2:, 2:])
    with pytest.raises(ValueError, match="saliency"):
        alpha_blend(frame, m * 3)
    with pytest.raises(ValueError, match="alpha"):
        alpha_blend(frame, m, alpha=1.5)


# --- mass shares ------------------------------------------------------------------------------------------------


def test_mass_share_on_known_boxes():
    smap = np.zeros((10, 12))
    smap[2:4, 3:6] = 2.0  # mass 12
    smap[8, 10] = 4.0  # mass 4, total 16
    boxes = box_mask(smap.shape, [(3, 2, 3, 2)])  # (x, y, w, h): exactly the first block
    assert boxes.sum() == 6 and boxes[2:4, 3:6].all()
    assert mass_share(smap, boxes) == pytest.approx(12 / 16)
    both = box_mask(smap.shape, [(4, 3, 1, 1), (9, 7, 10, 10)])  # one pixel of the block, and a box clipped
    assert both.sum() == 1 + 3 * 3
    assert mass_share(smap, both) == pytest.approx((2 + 4) / 16)
    assert box_mask(smap.shape, [(5, 5, 0, 3), (-4, -4, 2, 2)]).sum() == 0  # zero size; wholly outside
    assert box_mask(smap.shape, [(-1, -1, 3, 2)]).sum() == 2
    assert math.isnan(mass_share(np.zeros((10, 12)), boxes))
    assert mass_share(smap, np.ones_like(boxes)) == 1.0
    with pytest.raises(ValueError, match="box"):
        box_mask(smap.shape, [(0, 0, -1, 2)])
    with pytest.raises(ValueError, match="saliency"):
        mass_share(-smap, boxes)


def test_patch_mask_for_known_indices():
    m = patch_mask((96, 96), [0, 13, 143])
    assert m.sum() == 3 * 64
    assert m[0:8, 0:8].all() and m[8:16, 8:16].all() and m[88:, 88:].all()
    assert not m[0:8, 8:16].any()
    m2 = patch_mask((16, 24), [5], patch_px=8)  # 2×3 patches: 5 -> row 1, column 2
    assert np.argwhere(m2).min(axis=0).tolist() == [8, 16] and m2.sum() == 64
    assert patch_mask((96, 96), []).sum() == 0
    with pytest.raises(ValueError, match="patches"):
        patch_mask((96, 96), [144])
    with pytest.raises(ValueError, match="patch_px"):
        patch_mask((96, 90), [0])
