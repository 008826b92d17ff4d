"""MLR augmentation (SPEC §15.3): per-image replicate-pad shift and intensity, from an explicit torch.Generator."""

from __future__ import annotations

import math

import pytest
import torch

from spirl.agents.mlr.augment import (
    augment,
    draw_factors,
    draw_offsets,
    intensity,
    shift,
    shift_with_offsets,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_shift(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """ReplicationPad2d(pad), then each image cropped back to H × W at its own (dy, dx): one image at a time."""
    n, _, h, w = x.shape
    padded = torch.nn.ReplicationPad2d(pad)(x.double()).to(x.dtype)  # [N, C, H + 2p, W + 2p]
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def test_shift_with_offsets_matches_pad_then_crop_at_every_offset():
    x = torch.rand(81, 3, 10, 13, generator=_gen(0))  # non-square, so rows and columns cannot be swapped
    offsets = torch.tensor([(dy, dx) for dy in range(9) for dx in range(9)])  # [81, 2]: all of {0..8}²
    assert torch.equal(shift_with_offsets(x, offsets, pad=4), _reference_shift(x, offsets, 4))
    # pad 2: offsets in {0..4}
    small = offsets[(offsets <= 4).all(dim=1)]
    assert torch.equal(shift_with_offsets(x[: len(small)], small, pad=2), _reference_shift(x[: len(small)], small, 2))


def test_shift_equals_reference_at_the_drawn_offsets():
    x = torch.rand(64, 4, 84, 84, generator=_gen(1))
    out = shift(x, _gen(7))
    offsets = draw_offsets(64, _gen(7))  # the same draw as shift's
    assert offsets.shape == (64, 2) and offsets.dtype == torch.int64
    assert int(offsets.min()) >= 0 and int(offsets.max()) <= 8
    assert len({tuple(o) for o in offsets.tolist()}) > 1  # independent per image
    assert torch.equal(out, _reference_shift(x, offsets, 4))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_centre_offset_is_identity_and_corner_offset_replicates_the_edge():
    x = torch.rand(2, 4, 84, 84, generator=_gen(2))
    assert torch.equal(shift_with_offsets(x, torch.tensor([[4, 4], [4, 4]])), x)
    out = shift_with_offsets(x, torch.tensor([[0, 0], [8, 8]]))
    assert torch.equal(out[0, :, 4:, 4:], x[0, :, :80, :80])  # moved down-right by 4 px
    assert (out[0, :, :5, :5] == x[0, :, :1, :1]).all()  # top-left corner replicated
    assert torch.equal(out[1, :, :80, :80], x[1, :, 4:, 4:])  # moved up-left by 4 px
    assert (out[1, :, 79:, 79:] == x[1, :, 83:, 83:]).all()


def test_shift_of_a_constant_image_is_constant_and_works_on_uint8():
    x = torch.full((16, 4, 84, 84), 7.25)
    assert (shift(x, _gen(3)) == 7.25).all()
    frames = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, generator=_gen(4))
    out = shift(frames, _gen(5))
    assert out.dtype == torch.uint8
    assert torch.equal(out, _reference_shift(frames, draw_offsets(8, _gen(5)), 4))


def test_offsets_are_uniform_on_0_to_8_for_each_axis():
    """20,000 images: each of the 9 values has frequency 1/9 per axis (σ ≈ 0.0022; ±0.011 is 5σ)."""
    offsets = draw_offsets(20000, _gen(6))
    for axis in range(2):
        freq = torch.bincount(offsets[:, axis], minlength=9).double() / 20000
        assert freq.shape == (9,) and (freq - 1 / 9).abs().max() < 0.011, freq
    # dy and dx independent: P(dy = dx) = 1/9
    assert abs(float((offsets[:, 0] == offsets[:, 1]).double().mean()) - 1 / 9) < 0.011


def test_intensity_scales_each_image_by_one_factor_in_0_9_1_1():
    x = torch.rand(500, 4, 6, 6, generator=_gen(8)) + 0.5
    out = intensity(x, _gen(9))
    ratio = out / x  # [N, C, H, W]
    factor = ratio[:, :1, :1, :1]  # [N, 1, 1, 1]
    assert torch.allclose(ratio, factor.expand_as(ratio), rtol=1e-6, atol=0)  # channels and pixels share it
    assert float(factor.min()) >= 0.9 - 1e-6 and float(factor.max()) <= 1.1 + 1e-6
    assert torch.allclose(factor.flatten(), draw_factors(500, _gen(9)), rtol=1e-6, atol=0)
    assert factor.flatten().std() > 0.01  # one factor per image, not one per batch


def _clipped_normal_std(a: float) -> float:
    """Std of clamp(Z, −a, a), Z ~ N(0, 1): var = P(|Z| < a) − 2aφ(a) + a²P(|Z| > a)."""
    inside = math.erf(a / math.sqrt(2))
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    return math.sqrt(inside - 2 * a * phi + a * a * (1 - inside))


def test_intensity_factor_statistics():
    """40,000 factors: mean 1 (σ ≈ 0.00024), std 0.05 · 0.95945 = 0.04797 (σ ≈ 0.00016), 4.55 % at the clip."""
    factors = intensity(torch.ones(40000, 1, 1, 1), _gen(10)).flatten().double()
    assert abs(float(factors.mean()) - 1.0) < 0.0015
    expected_std = 0.05 * _clipped_normal_std(2.0)
    assert abs(expected_std - 0.04797) < 1e-5
    assert abs(float(factors.std()) - expected_std) < 0.001
    at_clip = float(((factors - 1).abs() > 0.1 - 1e-6).double().mean())  # P(|Z| > 2) = 0.0455 (σ ≈ 0.001)
    assert abs(at_clip - (1 - math.erf(2 / math.sqrt(2)))) < 0.006
    assert float(factors.min()) >= 0.9 - 1e-6 and float(factors.max()) <= 1.1 + 1e-6


def test_augment_is_intensity_after_shift_from_the_same_generator():
    x = torch.rand(32, 4, 84, 84, generator=_gen(11))
    before = x.clone()
    out = augment(x, _gen(12))
    generator = _gen(12)
    assert torch.equal(out, intensity(shift(x, generator), generator))
    assert torch.equal(x, before)  # input untouched
    assert torch.equal(augment(x, _gen(12)), out)  # deterministic
    assert not torch.equal(augment(x, _gen(13)), out)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_is_kept(dtype):
    x = torch.rand(4, 4, 84, 84, generator=_gen(14)).to(dtype)
    assert augment(x, _gen(15)).dtype == dtype
    assert intensity(x, _gen(15)).dtype == dtype
    assert shift(x, _gen(15)).dtype == dtype


def test_global_torch_rng_is_untouched():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    x = torch.rand(8, 4, 84, 84, generator=_gen(16))
    augment(x, _gen(17))
    shift(x, _gen(17))
    intensity(x, _gen(17))
    draw_offsets(8, _gen(17))
    draw_factors(8, _gen(17))
    assert torch.equal(torch.get_rng_state(), state)


def test_bad_arguments_raise_value_errors_naming_them():
    x = torch.rand(2, 4, 84, 84)
    with pytest.raises(ValueError, match="generator"):
        shift(x, None)
    with pytest.raises(ValueError, match="generator"):
        intensity(x, None)
    with pytest.raises(ValueError, match="pad"):
        shift(x, _gen(0), pad=-1)
    with pytest.raises(ValueError, match="offsets"):
        shift_with_offsets(x, torch.tensor([[0, 9], [4, 4]]))
    with pytest.raises(ValueError, match="offsets"):
        shift_with_offsets(x, torch.tensor([[4, 4]]))
    with pytest.raises(ValueError, match="x must be"):
        shift(x[0], _gen(0))
    with pytest.raises(ValueError, match="floating"):
        intensity(torch.zeros(2, 4, 84, 84, dtype=torch.uint8), _gen(0))
    with pytest.raises(ValueError, match="scale"):
        intensity(x, _gen(0), scale=-0.1)
    with pytest.raises(ValueError, match="clip"):
        augment(x, _gen(0), clip=-1.0)
