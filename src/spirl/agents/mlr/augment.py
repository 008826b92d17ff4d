"""Image augmentation of MLR (SPEC §15.3): random shift, then random intensity, per image; usable by any agent.

  shift      replicate padding of `pad` px on each side (ReplicationPad2d(4)), then a crop back to H × W at an offset
             (dy, dx) drawn uniformly in {0..2·pad}² independently for each image.
  intensity  x · (1 + scale · clip(ε, −clip, clip)), ε ~ N(0, 1), one scalar per image (scale 0.05, clip 2: a factor
             in [0.9, 1.1]).

Both act on a flattened batch [N, C, H, W] (N = B·T for windows of T steps); the C channels of an image (its
stacked frames) share its offset and its factor. Probability 1: every image is shifted and scaled. All draws come
from an explicit torch.Generator (offsets first, then the normals), on the generator's device, and move to the
input's device; the global RNG is never used. The output keeps the input's dtype and device.

MLR masks first, then augments (`spirl.agents.mlr.masking`): the shift moves the mask with the image.

The shift needs no padded copy: replicate padding then a crop at (dy, dx) reads pixel
(clamp(i + dy − pad, 0, H − 1), clamp(j + dx − pad, 0, W − 1)) for output pixel (i, j), so one gather over the
flattened image does it (≈ 40 ms for [512, 4, 84, 84] float32 on one busy CPU core).
"""

from __future__ import annotations

import torch

SHIFT_PAD = 4  # px of replicate padding per side (ReplicationPad2d(4)); offsets in {0..8}
INTENSITY_SCALE = 0.05  # std of the factor's normal before clipping
INTENSITY_CLIP = 2.0  # ε is clipped to [−2, 2]: factors in [0.9, 1.1]


def _check_generator(generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator (the global RNG is never used), got {generator!r}")
    return generator


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a [N, C, H, W] tensor, got {got}")


def _check_pad(pad: int) -> int:
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an integer >= 0, got {pad!r}")
    return pad


def draw_offsets(n: int, generator: torch.Generator, pad: int = SHIFT_PAD) -> torch.Tensor:
    """Crop offsets of `shift`: one torch.randint(0, 2·pad + 1, (n, 2)) draw from `generator`.

    Returns: [n, 2] int64 (dy, dx), each uniform in {0..2·pad}, on the generator's device.
    """
    pad = _check_pad(pad)
    generator = _check_generator(generator)
    return torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=generator.device)  # [n, 2]


def shift_with_offsets(x: torch.Tensor, offsets: torch.Tensor, pad: int = SHIFT_PAD) -> torch.Tensor:
    """Replicate-pad each image by `pad` px per side, then crop H × W at its own offset (dy, dx).

    Args:
        x: [N, C, H, W], any dtype.
        offsets: [N, 2] integers (dy, dx) in [0, 2·pad]; (pad, pad) leaves an image unchanged.
        pad: px of replicate padding per side.
    Returns:
        [N, C, H, W], x's dtype and device: out[n, c, i, j] = x[n, c, clamp(i + dy_n − pad), clamp(j + dx_n − pad)].
    """
    _check_images(x)
    pad = _check_pad(pad)
    n, c, h, w = x.shape
    offsets = torch.as_tensor(offsets, device=x.device)
    if tuple(offsets.shape) != (n, 2) or offsets.is_floating_point() or offsets.is_complex():
        raise ValueError(f"offsets must be [N, 2] = {(n, 2)} integers, got {tuple(offsets.shape)} {offsets.dtype}")
    offsets = offsets.long()
    if offsets.numel() and (offsets.min() < 0 or offsets.max() > 2 * pad):
        raise ValueError(f"offsets must lie in [0, 2·pad] = [0, {2 * pad}]")
    rows = torch.arange(h, device=x.device)[None, :] + offsets[:, :1] - pad  # [N, H]
    cols = torch.arange(w, device=x.device)[None, :] + offsets[:, 1:] - pad  # [N, W]
    rows, cols = rows.clamp_(0, h - 1), cols.clamp_(0, w - 1)
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)  # [N, C, H·W]
    return x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)  # [N, C, H, W]


def shift(x: torch.Tensor, generator: torch.Generator, pad: int = SHIFT_PAD) -> torch.Tensor:
    """Random shift (DrQ / SPR / MLR): `shift_with_offsets` at offsets `draw_offsets(N, generator, pad)`.

    Args: x [N, C, H, W]; generator; pad (4). Returns: [N, C, H, W], x's dtype and device.
    """
    _check_images(x)
    offsets = draw_offsets(x.shape[0], generator, pad)  # [N, 2]
    return shift_with_offsets(x, offsets, pad)


def draw_factors(
    n: int, generator: torch.Generator, scale: float = INTENSITY_SCALE, clip: float = INTENSITY_CLIP
) -> torch.Tensor:
    """Intensity factors: 1 + scale · clamp(ε, −clip, clip), ε = torch.randn(n) from `generator`.

    Returns: [n] float32 in [1 − scale·clip, 1 + scale·clip], on the generator's device.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale >= 0:
        raise ValueError(f"scale must be a number >= 0, got {scale!r}")
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip >= 0:
        raise ValueError(f"clip must be a number >= 0, got {clip!r}")
    generator = _check_generator(generator)
    eps = torch.randn(n, generator=generator, device=generator.device)  # [n]
    return 1.0 + scale * eps.clamp_(-clip, clip)


def _check_floating(x: torch.Tensor) -> None:
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor for intensity, got {x.dtype}")


def intensity(
    x: torch.Tensor, generator: torch.Generator, scale: float = INTENSITY_SCALE, clip: float = INTENSITY_CLIP
) -> torch.Tensor:
    """Random intensity: each image times its own factor `draw_factors(N, generator, scale, clip)`.

    Args: x [N, C, H, W] floating; generator; scale (0.05); clip (2.0).
    Returns: [N, C, H, W], x's dtype and device; x itself is not modified.
    """
    _check_images(x)
    _check_floating(x)
    factors = draw_factors(x.shape[0], generator, scale, clip)  # [N]
    return x * factors.to(device=x.device, dtype=x.dtype)[:, None, None, None]


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    pad: int = SHIFT_PAD,
    scale: float = INTENSITY_SCALE,
    clip: float = INTENSITY_CLIP,
) -> torch.Tensor:
    """MLR's augmentation, intensity(shift(x)), with the same draws (offsets, then normals) from `generator`.

    Args: x [N, C, H, W] floating (N = B·T for windows; C stacked frames); generator; pad; scale; clip.
    Returns: [N, C, H, W], x's dtype and device; x itself is not modified.
    """
    _check_images(x)
    _check_floating(x)
    out = shift(x, generator, pad)  # [N, C, H, W], a fresh tensor
    factors = draw_factors(x.shape[0], generator, scale, clip)  # [N]
    return out.mul_(factors.to(device=x.device, dtype=x.dtype)[:, None, None, None])
