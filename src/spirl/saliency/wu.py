"""Self-supervised attention mask of Wu, Khetarpal & Precup (SPEC §13, scorer `wu_mask`).

A feature encoder Φ and a mask generator Ψ read one grayscale 84×84 frame in [0, 1]. To rebuild a target frame x_t,
the decoder gets the source frame's features where neither frame is marked salient and the target's own features
where the target is marked salient:

    Φ̂ = (1 − Ψ(x_s))·(1 − Ψ(x_t))·Φ(x_s) + Ψ(x_t)·Φ(x_t),   Φ(x_s), Ψ(x_s) detached.

A sparsity penalty on Ψ(x_t) keeps the mask off whatever the source frame already explains (the static background),
so Ψ learns to mark what changes between frames of an episode: the moving objects.

Shapes (84×84 input): Φ, Ψ convs 84 → 20 → 9 → 7; Φ(x) [B, 32, 7, 7], Ψ(x) [B, 1, 7, 7]; decoder 7 → 9 → 20 → 84.
Each mask cell covers 12×12 gray pixels. Patch scores upsample Ψ to the observation frame (96×96) and average it
over SPIRL's 8×8 patches (`patch_scores`).

Training here is offline on a game's random-policy frames (the released code trains online beside A2C: a
deviation, SPEC §13). Every random draw (init, pair sampling) comes from explicit torch.Generators. The stage
(src/pretrain_wu.py) uses the training helpers at the end of this module: `new_run`, `train_until`, a fingerprinted
checkpoint (`save_checkpoint` / `load_checkpoint`, resumed exactly) and `save_model` / `load_model` (.npz).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spirl.common import checkpoints
from spirl.common.checkpoints import load_checkpoint, save_checkpoint  # noqa: F401 (the stage scripts' API)
from spirl.common.io import write_npz
from spirl.common.nn import conv_output_size
from spirl.common.seeding import derive_seed
from spirl.envs.preprocess import to_gray84
from spirl.params import WuParams

GRAY_SIZE = 84  # input side (DE-Rainbow's gray84 frame)
FEATURE_CHANNELS = 32  # channels of Φ(x)
MASK_SIZE = 7  # side of Φ(x) and Ψ(x) for an 84×84 input
ENCODER_LAYERS = ((1, 32, 8, 4), (32, 64, 4, 2), (64, 32, 3, 1))  # (in, out, kernel, stride) of Φ's and Ψ's convs
DECODER_LAYERS = ((32, 64, 3, 1), (64, 32, 4, 2), (32, 16, 8, 4))  # ConvTranspose2d (in, out, kernel, stride)


@dataclass(frozen=True)
class WuSettings:
    """Training settings of the Wu mask (SPEC §13 defaults).

    delta: δ, per-pixel squared errors of the transported reconstruction at or below it are ignored.
    mask_weight: λ_m, weight of the sparsity penalty mean(Ψ(x_t)).
    max_gap: largest t − s of a training pair (60: the released code's 60-step buffer).
    lr: Adam learning rate.
    batch_size: pairs per step.
    """

    delta: float = 0.01
    mask_weight: float = 1e-3
    max_gap: int = 60
    lr: float = 1e-3
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("delta", "mask_weight", "lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"WuSettings.{name} must be a finite number >= 0, got {value!r}")
        if self.lr == 0:
            raise ValueError("WuSettings.lr must be > 0")
        for name in ("max_gap", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"WuSettings.{name} must be a positive integer, got {value!r}")


class WuOutput(NamedTuple):
    """One forward pass on (x_s, x_t) pairs.

    recon: x̂_t decoded from the transported features Φ̂, [B, 1, 84, 84].
    recon_auto: x̂_t^auto decoded from Φ(x_t), [B, 1, 84, 84].
    mask_t: Ψ(x_t) in [0, 1], [B, 1, 7, 7] (carries gradient).
    """

    recon: torch.Tensor
    recon_auto: torch.Tensor
    mask_t: torch.Tensor


class WuLossTerms(NamedTuple):
    """The loss and its three terms (scalars): total = transport + auto + mask_weight · sparsity."""

    total: torch.Tensor
    transport: torch.Tensor
    auto: torch.Tensor
    sparsity: torch.Tensor


def _encoder_convs() -> list[nn.Conv2d]:
    """The three convolutions shared by the layouts of Φ and Ψ (84 → 20 → 9 → 7)."""
    return [nn.Conv2d(c_in, c_out, k, s) for c_in, c_out, k, s in ENCODER_LAYERS]


def _encoder_sides(size: int) -> list[int]:
    """Spatial side after each encoder conv for an input of side `size` (84 → [20, 9, 7])."""
    sides = []
    for _, _, k, s in ENCODER_LAYERS:
        size = conv_output_size(size, k, s, 0)
        sides.append(size)
    return sides


@torch.no_grad()
def _init_orthogonal(module: nn.Module, generator: torch.Generator | None) -> None:
    """Every conv / transposed-conv weight orthogonal with ReLU gain √2, every bias 0; LayerNorm keeps (1, 0).

    The weight is orthogonalised as the matrix [dim 0, rest] (out × in·k² for Conv2d, in × out·k² for
    ConvTranspose2d), drawn from `generator` (None: the global RNG).
    """
    gain = nn.init.calculate_gain("relu")
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.orthogonal_(layer.weight, gain=gain, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()


class WuAttention(nn.Module):
    """Φ (feature encoder), Ψ (mask generator) and the decoder of SPEC §13, for 1×84×84 inputs in [0, 1].

    Φ: Conv(1→32, k8, s4) ReLU, Conv(32→64, k4, s2) ReLU, Conv(64→32, k3, s1) ReLU → [B, 32, 7, 7].
    Ψ: the same three convs, each followed by LayerNorm over (C, H, W) (elementwise affine, PyTorch's default) and
       ReLU; Conv(32→1, k1); sigmoid → [B, 1, 7, 7].
    Decoder: ConvT(32→64, k3, s1) ReLU, ConvT(64→32, k4, s2) ReLU, ConvT(32→16, k8, s4) ReLU, Conv(16→1, k3, pad 1)
       → [B, 1, 84, 84], no output activation.
    Init: orthogonal weights (ReLU gain), zero biases, drawn from `generator` only (the global RNG is untouched
    when one is given).
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        sides = _encoder_sides(GRAY_SIZE)
        fork = torch.random.fork_rng(devices=[]) if generator is not None else contextlib.nullcontext()
        with fork:  # default layer init draws from the global RNG; it is overwritten below
            phi = _encoder_convs()
            self.encoder = nn.Sequential(phi[0], nn.ReLU(), phi[1], nn.ReLU(), phi[2], nn.ReLU())
            psi: list[nn.Module] = []
            for conv, side in zip(_encoder_convs(), sides, strict=True):
                psi += [conv, nn.LayerNorm([conv.out_channels, side, side]), nn.ReLU()]
            self.mask_generator = nn.Sequential(*psi, nn.Conv2d(FEATURE_CHANNELS, 1, 1), nn.Sigmoid())
            dec: list[nn.Module] = []
            for c_in, c_out, k, s in DECODER_LAYERS:
                dec += [nn.ConvTranspose2d(c_in, c_out, k, s), nn.ReLU()]
            self.decoder = nn.Sequential(*dec, nn.Conv2d(DECODER_LAYERS[-1][1], 1, 3, padding=1))
        _init_orthogonal(self, generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Φ(x). Args: x [B, 1, 84, 84] in [0, 1]. Returns: [B, 32, 7, 7] (>= 0)."""
        return self.encoder(_check_gray(x))

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Ψ(x). Args: x [B, 1, 84, 84] in [0, 1]. Returns: [B, 1, 7, 7] in [0, 1]."""
        return self.mask_generator(_check_gray(x))

    def decode(self, phi: torch.Tensor) -> torch.Tensor:
        """Decoder. Args: phi [B, 32, 7, 7]. Returns: [B, 1, 84, 84]."""
        return self.decoder(phi)

    def forward(self, x_s: torch.Tensor, x_t: torch.Tensor) -> WuOutput:
        """Reconstruct x_t through the transport (x̂_t) and from its own features (x̂_t^auto).

        The source frame's Φ and Ψ are evaluated without gradient (the transport detaches them anyway).
        Args: x_s, x_t [B, 1, 84, 84] in [0, 1]. Returns: WuOutput (recon, recon_auto [B, 1, 84, 84]; mask_t
        [B, 1, 7, 7]).
        """
        with torch.no_grad():
            phi_s, psi_s = self.features(x_s), self.mask(x_s)  # [B, 32, 7, 7], [B, 1, 7, 7]
        phi_t, psi_t = self.features(x_t), self.mask(x_t)
        mixed = transport(phi_s, psi_s, phi_t, psi_t)  # [B, 32, 7, 7]
        both = self.decode(torch.cat([mixed, phi_t]))  # [2B, 1, 84, 84]
        recon, recon_auto = both.chunk(2)
        return WuOutput(recon, recon_auto, psi_t)


def _check_gray(x: torch.Tensor) -> torch.Tensor:
    """x unchanged if it is a float [B, 1, 84, 84], else ValueError."""
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, GRAY_SIZE, GRAY_SIZE) or not x.is_floating_point():
        raise ValueError(f"input must be float [B, 1, {GRAY_SIZE}, {GRAY_SIZE}], got {x.dtype} {tuple(x.shape)}")
    return x


def transport(phi_s: torch.Tensor, psi_s: torch.Tensor, phi_t: torch.Tensor, psi_t: torch.Tensor) -> torch.Tensor:
    """Φ̂ = (1 − Ψ(x_s))·(1 − Ψ(x_t))·Φ(x_s) + Ψ(x_t)·Φ(x_t), with Φ(x_s) and Ψ(x_s) detached.

    Gradient reaches phi_t and psi_t only (psi_t through both terms).
    Args: phi_s, phi_t [B, C, h, w]; psi_s, psi_t [B, 1, h, w] (broadcast over C). Returns: [B, C, h, w].
    """
    phi_s, psi_s = phi_s.detach(), psi_s.detach()
    return (1.0 - psi_s) * (1.0 - psi_t) * phi_s + psi_t * phi_t


def thresholded_squared_error(pred: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    """mean over all elements of e·[e > δ], e = (pred − target)² (errors at or below δ count as 0, not dropped).

    Args: pred, target of equal shape. Returns: scalar.
    """
    err = (pred - target) ** 2
    return torch.where(err > delta, err, torch.zeros_like(err)).mean()


def wu_loss(out: WuOutput, x_t: torch.Tensor, settings: WuSettings) -> WuLossTerms:
    """L = mean(e·[e > δ]) (e = (x̂_t − x_t)²) + mean((x̂_t^auto − x_t)²) + λ_m · mean(Ψ(x_t)).

    Args: out the forward pass on the pairs; x_t [B, 1, 84, 84] the targets. Returns: WuLossTerms (scalars).
    """
    transported = thresholded_squared_error(out.recon, x_t, settings.delta)
    auto = F.mse_loss(out.recon_auto, x_t)
    sparsity = out.mask_t.mean()
    return WuLossTerms(transported + auto + settings.mask_weight * sparsity, transported, auto, sparsity)


def gray_frames(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Observation frames to the mask's input frames: spirl.envs.preprocess.to_gray84 (cv2 gray, bilinear resize).

    Args: frames uint8 [B, H, W, 3] RGB. Returns: uint8 CPU tensor [B, 84, 84] (store these, convert per batch).
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.cpu().numpy()
    return torch.from_numpy(to_gray84(frames))


def gray_input(gray: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 gray frames [B, 84, 84] to the network input float32 [B, 1, 84, 84] in [0, 1] (on `device`)."""
    if gray.dtype != torch.uint8 or gray.dim() != 3 or tuple(gray.shape[1:]) != (GRAY_SIZE, GRAY_SIZE):
        raise ValueError(f"gray frames must be uint8 [B, {GRAY_SIZE}, {GRAY_SIZE}], got {gray.dtype} "
                         f"{tuple(gray.shape)}")
    return gray.to(device)[:, None].float() / 255.0


def pair_indices(episodes: np.ndarray | torch.Tensor, batch: int, max_gap: int = 60,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample (source, target) frame index pairs from the same episode, target later by 1..max_gap steps.

    Frames are stored in playing order; an episode is a maximal run of consecutive equal ids in `episodes`. For
    frame i let room(i) = (index of the last frame of i's run) − i. Each pair is drawn as:
      s uniform over the frames with room(s) >= 1 (every frame except the last of its episode);
      t − s uniform over 1..min(max_gap, room(s)).
    So the gap is uniform on 1..max_gap wherever the episode has max_gap more frames after s; near an episode's
    end it is clipped to the frames that remain (never crossing into the next episode).

    Args: episodes [F] int episode id per frame; batch pairs; max_gap >= 1; generator the only random source
        (required).
    Returns: s, t LongTensor [batch] on CPU with s < t <= s + max_gap, episodes[s] == episodes[t].
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError("pair_indices needs an explicit torch.Generator")
    if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 1:
        raise ValueError(f"max_gap must be a positive integer, got {max_gap!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be a non-negative integer, got {batch!r}")
    ids = torch.as_tensor(np.asarray(episodes) if not isinstance(episodes, torch.Tensor) else episodes).cpu()
    if ids.dim() != 1 or ids.is_floating_point():
        raise ValueError(f"episodes must be a 1-D integer array, got {ids.dtype} {tuple(ids.shape)}")
    room = _room(ids)  # [F]
    sources = torch.nonzero(room >= 1).flatten()  # [S]
    if len(sources) == 0:
        raise ValueError("no episode has two frames: cannot sample (source, target) pairs")
    s = sources[torch.randint(len(sources), (batch,), generator=generator)]  # [batch]
    span = room[s].clamp(max=max_gap)  # [batch] allowed gaps 1..span
    u = torch.rand(batch, generator=generator, dtype=torch.float64)  # [batch] in [0, 1)
    gap = 1 + torch.minimum((u * span).floor().long(), span - 1)  # uniform on 1..span
    return s, s + gap


def _room(ids: torch.Tensor) -> torch.Tensor:
    """Frames left in the episode after each frame.

    Args: ids [F] episode id per frame (episodes = runs of equal consecutive ids).
    Returns: [F] int64, room[i] = last index of i's run − i (0 for the last frame of a run).
    """
    n = len(ids)
    idx = torch.arange(n)
    is_last = torch.ones(n, dtype=torch.bool)
    is_last[:-1] = ids[1:] != ids[:-1]
    last_idx = torch.where(is_last, idx, n)  # [F]
    run_end = torch.flip(torch.cummin(torch.flip(last_idx, [0]), 0).values, [0])  # next run end at or after i
    return run_end - idx


def train_step(model: WuAttention, optimizer: torch.optim.Optimizer, gray: torch.Tensor, source: torch.Tensor,
               target: torch.Tensor, settings: WuSettings) -> WuLossTerms:
    """One Adam step on a batch of pairs.

    Args: gray uint8 [F, 84, 84] all frames (`gray_frames`), any device; source, target LongTensor [B] indices
        into it (`pair_indices`). Returns: the batch's WuLossTerms, detached.
    """
    device = next(model.parameters()).device
    x_s = gray_input(gray[source.to(gray.device)], device)  # [B, 1, 84, 84]
    x_t = gray_input(gray[target.to(gray.device)], device)
    model.train()
    terms = wu_loss(model(x_s, x_t), x_t, settings)
    optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    optimizer.step()
    return WuLossTerms(*(v.detach() for v in terms))


def mask_patch_scores(mask: torch.Tensor, frame_px: int, patch_px: int) -> torch.Tensor:
    """Patch scores from a mask: bilinear upsampling (align_corners=False) to frame_px², mean over each patch.

    Args: mask [B, 1, h, w] (Ψ, 7×7); frame_px the observation frame side (96); patch_px the patch side (8), a
        divisor of frame_px.
    Returns: float32 [B, N], N = (frame_px / patch_px)², patches row-major (spirl.saliency.mae.patchify's order).
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be [B, 1, h, w], got {tuple(mask.shape)}")
    _check_grid(frame_px, patch_px)
    up = F.interpolate(mask.float(), size=(frame_px, frame_px), mode="bilinear", align_corners=False)
    pooled = F.avg_pool2d(up, patch_px)  # [B, 1, grid, grid]
    return pooled.flatten(1)  # [B, grid²]


def _check_grid(frame_px: int, patch_px: int) -> int:
    """Patches per side, frame_px / patch_px; ValueError unless patch_px >= 1 divides frame_px."""
    if patch_px < 1 or frame_px < 1 or frame_px % patch_px:
        raise ValueError(f"frame_px ({frame_px}) must be a positive multiple of patch_px ({patch_px})")
    return frame_px // patch_px


def patch_scores(model: WuAttention, frames: np.ndarray | torch.Tensor, frame_px: int, patch_px: int,
                 chunk: int = 1024) -> torch.Tensor:
    """SPEC §13 `wu_mask` scores: Ψ of each frame's gray84 version, pooled onto SPIRL's patches.

    Runs in eval mode without gradient, `chunk` frames per pass; the model's previous mode is restored.
    Args: frames uint8 [B, frame_px, frame_px, 3] RGB observation frames; frame_px (96); patch_px (8).
    Returns: float32 [B, N] in [0, 1] on the model's device, N = (frame_px / patch_px)², row-major.
    """
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[1:] != (frame_px, frame_px, 3):
        raise ValueError(f"frames must be [B, {frame_px}, {frame_px}, 3], got {shape}")
    device = next(model.parameters()).device
    gray = gray_frames(frames)  # [B, 84, 84] uint8
    grid = _check_grid(frame_px, patch_px)
    out = torch.empty(shape[0], grid * grid, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, shape[0], chunk):
                part = slice(start, start + chunk)
                out[part] = mask_patch_scores(model.mask(gray_input(gray[part], device)), frame_px, patch_px)
    finally:
        model.train(was_training)
    return out


# ---- offline training on a game's random-policy frames (the pretrain_wu stage, SPEC §13) ---------------------------


def settings_from_params(wu: WuParams) -> WuSettings:
    """The loss and optimiser settings of the `wu` params section."""
    return WuSettings(delta=float(wu.delta), mask_weight=float(wu.mask_weight), max_gap=wu.max_gap, lr=float(wu.lr),
                      batch_size=wu.batch_size)


def wu_seeds(wu: WuParams, game: str) -> dict[str, int]:
    """The named seeds of a game's Wu-mask training (init, pairs), derived from wu.seed."""
    return {name: derive_seed(wu.seed, "wu", game, name) for name in ("init", "pairs")}


def updates_per_epoch(n_frames: int, batch_size: int) -> int:
    """Updates of one "epoch" (the loss curve's logging interval): ceil(n_frames / batch_size)."""
    if n_frames < 2 or batch_size < 1:
        raise ValueError(f"need >= 2 frames and a batch >= 1, got {n_frames} frames, batch {batch_size}")
    return -(-n_frames // batch_size)


def total_updates(n_frames: int, batch_size: int, epochs: int) -> int:
    """Updates of the whole run: ceil(epochs · n_frames / batch_size), as many pair-samples as the MAE sees frames
    in `epochs` epochs over the same archive (SPEC §13), rounded up to a whole batch."""
    updates_per_epoch(n_frames, batch_size)  # validates
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return -(-epochs * n_frames // batch_size)


LOSS_COLUMNS = ("loss", "transport", "auto", "sparsity")  # history columns: WuLossTerms' means (loss = total)


@dataclass
class WuRun:
    """What a Wu-mask training run carries from update to update (all of it is checkpointed).

    sums: float64 [4] running sums of (total, transport, auto, sparsity) over the updates of the current logging
    interval, added one update at a time, so the history does not depend on where a run was interrupted.
    """

    model: WuAttention
    optimizer: torch.optim.Optimizer
    pair_gen: torch.Generator
    sums: torch.Tensor
    updates: int = 0  # updates completed
    history: list[dict] = field(default_factory=list)  # one row per logging interval
    elapsed_s: float | None = 0.0  # wall seconds of the processes before this one (None: not recorded)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "pair_gen": self.pair_gen.get_state(), "sums": self.sums.cpu(), "updates": self.updates,
                "history": self.history, "elapsed_s": self.elapsed_s}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.pair_gen.set_state(state["pair_gen"])
        self.sums = state["sums"].to(self.sums.device, torch.float64)
        self.updates, self.history = int(state["updates"]), [dict(row) for row in state["history"]]
        self.elapsed_s = state.get("elapsed_s")


def new_run(settings: WuSettings, seeds: Mapping[str, int], device: torch.device | str = "cpu") -> WuRun:
    """A freshly initialised model (orthogonal init from seeds["init"]), Adam and the pair generator."""
    model = WuAttention(torch.Generator().manual_seed(seeds["init"])).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    return WuRun(model, optimizer, torch.Generator().manual_seed(seeds["pairs"]),
                 torch.zeros(len(LOSS_COLUMNS), dtype=torch.float64, device=device))


def fingerprint(wu: WuParams, seeds: Mapping[str, int], frames_path: Path) -> str:
    """Identity of a run: the `wu` parameters, the seeds and the exact frames file (spirl.common.checkpoints)."""
    return checkpoints.fingerprint("wu", wu, seeds, frames_path)


def train_until(run: WuRun, gray: torch.Tensor, episodes: torch.Tensor, settings: WuSettings, stop: int,
                per_epoch: int, total: int, on_step: Callable[[], None] | None = None, check_every: int = 100) -> None:
    """Train from run.updates up to `stop` updates (one Adam step on `settings.batch_size` pairs each).

    A history row is appended whenever run.updates reaches a multiple of `per_epoch` or `total`: the interval's
    mean loss terms. Losses stay on the model's device and are checked for non-finite values every `check_every`
    updates and at `stop` (one host sync each).

    Args: gray uint8 [F, 84, 84] all frames (`gray_frames`), on any device; episodes [F] episode ids (playing
        order, `pair_indices`); stop <= total; per_epoch the logging interval (`updates_per_epoch`); total the
        run's updates (`total_updates`).
    Raises:
        FloatingPointError: a non-finite loss, naming the first bad update (the state on disk is untouched).
    """
    if not run.updates <= stop <= total:
        raise ValueError(f"stop must lie in [{run.updates}, {total}], got {stop}")
    device = run.sums.device
    start = run.updates
    losses = torch.zeros(stop - start, device=device)  # total loss of each update in this call
    for i in range(stop - start):
        source, target = pair_indices(episodes, settings.batch_size, settings.max_gap, run.pair_gen)
        terms = train_step(run.model, run.optimizer, gray, source, target, settings)
        losses[i] = terms.total
        run.sums += torch.stack(list(terms)).to(torch.float64)
        run.updates += 1
        if (i + 1) % check_every == 0 or run.updates == stop:
            _check_finite(losses[: i + 1], start, total)
        if run.updates % per_epoch == 0 or run.updates == total:
            previous = run.history[-1]["updates"] if run.history else 0
            means = (run.sums / (run.updates - previous)).tolist()
            run.history.append({"epoch": len(run.history) + 1, "updates": run.updates,
                                "pair_samples": run.updates * settings.batch_size,
                                **dict(zip(LOSS_COLUMNS, means, strict=True))})
            run.sums.zero_()
        if on_step is not None:
            on_step()


def _check_finite(losses: torch.Tensor, start: int, total: int) -> None:
    """Raise FloatingPointError naming the first update (1-based, of the run) whose loss is not finite."""
    bad = torch.nonzero(~torch.isfinite(losses))
    if len(bad):
        i = int(bad[0])
        raise FloatingPointError(f"non-finite Wu loss {losses[i].item()} at update {start + i + 1}/{total}; "
                                 f"stopped, the checkpoint at update {start} is kept")


def save_model(model: WuAttention, path: Path) -> None:
    """The trained mask model for later stages: its state_dict as a deterministic .npz (equal weights give equal
    bytes; no pickle on load), written atomically."""
    write_npz(path, {name: value.detach().cpu().numpy() for name, value in model.state_dict().items()})


def load_model(path: Path, device: torch.device | str = "cpu") -> WuAttention:
    """A model written by save_model, on `device`, in eval mode (every tensor must match WuAttention's)."""
    with np.load(path) as data:
        state = {name: torch.from_numpy(data[name]) for name in data.files}
    model = WuAttention(torch.Generator().manual_seed(0))
    model.load_state_dict(state)
    return model.to(device).eval()


def write_loss_history(history: Sequence[Mapping], csv_path: Path, png_path: Path, title: str) -> None:
    """The loss curve: the history as CSV (one row per logging interval) and a log-scale plot of the total and its
    three terms (the sparsity term as mask_weight · mean Ψ is not drawn: mean Ψ itself is, on its own axis)."""
    from spirl.common.plots import plt, save_figure, write_csv

    write_csv(history, csv_path)
    updates = [row["updates"] for row in history]
    fig, (ax, ax_mask) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    for column, label in (("loss", "total"), ("transport", "transport (thresholded)"), ("auto", "auto-encoding")):
        ax.plot(updates, [max(row[column], 1e-12) for row in history], marker="o", ms=3, label=label)
    ax.set(xlabel="update", ylabel="mean training loss per interval", yscale="log")
    ax.legend(fontsize=8)
    ax_mask.plot(updates, [row["sparsity"] for row in history], marker="o", ms=3, color="tab:red")
    ax_mask.set(xlabel="update", ylabel="mean Ψ(x_t) (sparsity term / λ_m)", ylim=(0, 1))
    for a in (ax, ax_mask):
        a.grid(alpha=0.3)
    fig.suptitle(title)
    save_figure(fig, png_path)


def figure_indices(n_frames: int, count: int = 4) -> list[int]:
    """`count` frame indices spread evenly over an archive of n_frames (first and last included)."""
    return sorted({int(round(i)) for i in np.linspace(0, n_frames - 1, min(count, n_frames))})


def write_mask_figure(model: WuAttention, frames: np.ndarray, indices: Sequence[int], path: Path, title: str) -> None:
    """Ψ on real frames: per frame, the RGB frame with Ψ upsampled bilinearly (align_corners=False, as the scorer
    does) over it, and below it the 7×7 mask itself. Args: frames uint8 [F, H, W, 3]."""
    from spirl.common.plots import plt, save_figure

    chosen = frames[list(indices)]  # [k, H, W, 3]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mask = model.mask(gray_input(gray_frames(chosen), device)).cpu()  # [k, 1, 7, 7]
    finally:
        model.train(was_training)
    up = F.interpolate(mask, size=chosen.shape[1:3], mode="bilinear", align_corners=False)[:, 0].numpy()
    fig, axes = plt.subplots(2, len(chosen), figsize=(2.6 * len(chosen), 5.4), squeeze=False, layout="constrained")
    for col, index in enumerate(indices):
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(chosen[col])
        top.imshow(up[col], cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.55)
        top.set_title(f"frame {index}", fontsize=9)
        image = bottom.imshow(mask[col, 0].numpy(), cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")
        bottom.set_title(f"Ψ {MASK_SIZE}×{MASK_SIZE}, max {mask[col].max().item():.2f}", fontsize=9)
        for a in (top, bottom):
            a.set_xticks([])
            a.set_yticks([])
    fig.colorbar(image, ax=axes[1].tolist(), shrink=0.8, label="Ψ")
    fig.suptitle(title)
    save_figure(fig, path)
