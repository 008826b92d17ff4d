"""Pluggable saliency scorers (SPEC §13): frames → one score per patch, higher = more salient.

Every scorer returns float32 [B, N], N = (frame_px / patch_px)², patches in row-major order (patch index =
row·grid + col, the order of spirl.mae.patchify and of the MAE error map E). Dynamic-K (SPEC §5,
spirl.selection.dynamic_k_batched) reads these scores exactly as it reads E.

`saliency.scorer` values:
  mae_surround   E of SPEC §4 from the pre-trained MAE: spirl.saliency.error_map(trained model, frames, settings).
  mae_untrained  the same error_map call on an MAE built with the same architecture and init seed but never
                 trained (a control).
  frame_diff     `frame_diff`: mean |x_t − x_{t−1}| per patch, with the previous frame of the same env.
  random         `random_scores`: i.i.d. U[0, 1) from the run's seeded torch.Generator.
  wu_mask        spirl.wu.patch_scores: Wu et al.'s self-supervised attention mask pooled onto the patches.

"All equal" rows: a row whose N scores are identical (frame_diff at an episode start, or with no motion at all) is
returned as N zeros. Dynamic-K then gives q_i = 1/N for every i, so every D_i = 2/N ties and the first index of the
window wins: K = K_max, and the kept patches are the K_max highest patch indices (the stable sort's last K_max,
i.e. the bottom of the screen). No score is ever divided by its sum here; dynamic-K handles a zero sum itself.
"""

from __future__ import annotations

import numpy as np
import torch

from spirl.mae import MaskedAutoencoder, patchify
from spirl.saliency import ErrorMapSettings, error_map
from spirl.wu import WuAttention, patch_scores

SCORERS = ("mae_surround", "mae_untrained", "frame_diff", "random", "wu_mask")
MAE_SCORERS = ("mae_surround", "mae_untrained")  # both are spirl.saliency.error_map; only the model differs


def check_scorer(name: object) -> str:
    """Return `name` if it is one of SCORERS, else raise ValueError naming saliency.scorer and the allowed values."""
    if not isinstance(name, str) or name not in SCORERS:
        raise ValueError(f"saliency.scorer must be one of {SCORERS}, got {name!r}")
    return name


def _frames_tensor(frames: np.ndarray | torch.Tensor, name: str, device: torch.device | str | None) -> torch.Tensor:
    """uint8 frames [B, H, W, C] as a torch uint8 tensor on `device` (None: where they are, CPU for numpy)."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"{name} must be uint8 [B, H, W, C], got {x.dtype} {tuple(x.shape)}")
    return x if device is None else x.to(device)


def frame_diff(frames: np.ndarray | torch.Tensor, previous: np.ndarray | torch.Tensor | None, patch_size: int,
               has_previous: np.ndarray | torch.Tensor | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
    """`frame_diff` scores: mean over each patch's pixels and channels of |x_t − x_{t−1}|, x in [0, 1].

    Row b has a previous frame when `previous` is given and has_previous[b] is True (has_previous None: every
    row has one if `previous` is given, none if it is None). A row without one (an episode start) is all zeros,
    as is a row with no motion; all-equal rows make dynamic-K keep K_max (module docstring). The content of
    previous[b] is ignored where has_previous[b] is False, so a vectorised env can keep a stale buffer there.

    Args:
        frames: uint8 [B, H, W, C], the current frames x_t (numpy or torch).
        previous: uint8 [B, H, W, C], each env's previous frame x_{t−1}, or None (no row has one).
        patch_size: patch side p, dividing H and W.
        has_previous: bool [B] or None.
        device: where to compute (None: the frames' device, CPU for numpy).
    Returns:
        float32 [B, N] in [0, 1], N = (H/p)·(W/p), row-major patches (spirl.mae.patchify order).
    """
    x = _frames_tensor(frames, "frames", device)
    b, h, w, _ = x.shape
    if patch_size < 1 or h % patch_size or w % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide the frame size {h}x{w}")
    n = (h // patch_size) * (w // patch_size)
    flags = _previous_flags(previous, has_previous, b, x.device)  # [B] bool
    if previous is None:
        return torch.zeros(b, n, dtype=torch.float32, device=x.device)
    prev = _frames_tensor(previous, "previous", x.device)
    if prev.shape != x.shape:
        raise ValueError(f"previous {tuple(prev.shape)} must have the shape of frames {tuple(x.shape)}")
    diff = (x.to(torch.int16) - prev.to(torch.int16)).abs().permute(0, 3, 1, 2).float()  # [B, C, H, W] in 0..255
    scores = patchify(diff, patch_size).mean(dim=-1) / 255.0  # [B, N]
    return torch.where(flags[:, None], scores, 0.0)


def _previous_flags(previous: object, has_previous: np.ndarray | torch.Tensor | None, batch: int,
                    device: torch.device) -> torch.Tensor:
    """Validated has-previous flags [B] bool on device (see frame_diff)."""
    if has_previous is None:
        return torch.full((batch,), previous is not None, dtype=torch.bool, device=device)
    flags = torch.as_tensor(has_previous, device=device)
    if flags.dtype != torch.bool or tuple(flags.shape) != (batch,):
        raise ValueError(f"has_previous must be bool [{batch}], got {flags.dtype} {tuple(flags.shape)}")
    if previous is None and bool(flags.any()):
        raise ValueError("has_previous marks rows with a previous frame but previous is None")
    return flags


def random_scores(batch: int, num_patches: int, generator: torch.Generator,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """`random` scores: i.i.d. U[0, 1), drawn only from `generator` (the run's seeded stream), row-major.

    Args: batch B; num_patches N; generator an explicit torch.Generator (drawn on its own device); device where
        the result goes (None: the generator's device).
    Returns: float32 [B, N].
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError("random_scores needs an explicit torch.Generator")
    if batch < 0 or num_patches < 1:
        raise ValueError(f"need batch >= 0 and num_patches >= 1, got {batch}, {num_patches}")
    out = torch.rand(batch, num_patches, generator=generator, device=generator.device, dtype=torch.float32)
    return out if device is None else out.to(device)


def score_frames(scorer: str, frames: np.ndarray | torch.Tensor, patch_size: int, *,
                 mae: MaskedAutoencoder | None = None, error_settings: ErrorMapSettings | None = None,
                 previous: np.ndarray | torch.Tensor | None = None,
                 has_previous: np.ndarray | torch.Tensor | None = None,
                 generator: torch.Generator | None = None, wu_model: WuAttention | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Scores of one batch of frames under `saliency.scorer` (the inputs each scorer needs are keyword arguments).

    mae_surround / mae_untrained: error_map(mae, frames, error_settings) (the caller passes the trained or the
        untrained MAE); frame_diff: previous, has_previous; random: generator; wu_mask: wu_model.
    Args: frames uint8 [B, H, W, 3]; patch_size p. Returns: float32 [B, N] row-major, on the scorer's device
        (the model's for MAE / Wu scorers, `device` otherwise).
    """
    check_scorer(scorer)
    batch, height, width = (int(v) for v in frames.shape[:3])
    if scorer in MAE_SCORERS:
        if mae is None or error_settings is None:
            raise ValueError(f"saliency.scorer {scorer!r} needs the MAE and its error-map settings")
        if mae.config.patch_size != patch_size:
            raise ValueError(f"the MAE's patch size {mae.config.patch_size} differs from patch_size {patch_size}")
        return error_map(mae, frames, error_settings)
    if scorer == "frame_diff":
        return frame_diff(frames, previous, patch_size, has_previous, device)
    if scorer == "random":
        if generator is None:
            raise ValueError("saliency.scorer 'random' needs the run's torch.Generator")
        if patch_size < 1 or height % patch_size or width % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide the frame size {height}x{width}")
        return random_scores(batch, (height // patch_size) * (width // patch_size), generator, device)
    if wu_model is None:
        raise ValueError("saliency.scorer 'wu_mask' needs the trained Wu attention model")
    return patch_scores(wu_model, frames, height, patch_size)
