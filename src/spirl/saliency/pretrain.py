"""MAE pre-training (SPEC §3.2, paper Tab. 5): AdamW groups, per-iteration warm-up + cosine, resumable.

Everything random comes from two explicit CPU torch.Generators (batch sampling, masking), saved in the
per-epoch checkpoint with the weights and the optimiser, so a resumed run continues exactly where an
uninterrupted one would be.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spirl.common import checkpoints
from spirl.common.checkpoints import load_checkpoint, save_checkpoint  # noqa: F401 (the stage scripts' API)
from spirl.common.io import write_npz
from spirl.common.seeding import derive_seed
from spirl.params import MAEParams
from spirl.saliency.error_maps import frames_to_tensor
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder


def mae_config(mae: MAEParams, frame_size_px: int) -> MAEConfig:
    """The MAE architecture of the `mae` section for frames of frame_size_px x frame_size_px x 3."""
    return MAEConfig(img_size=frame_size_px, patch_size=mae.patch_size_px, in_chans=3,
                     encoder_dim=mae.encoder_dim, encoder_depth=mae.encoder_depth, encoder_heads=mae.encoder_heads,
                     decoder_dim=mae.decoder_dim, decoder_depth=mae.decoder_depth, decoder_heads=mae.decoder_heads,
                     mlp_ratio=mae.mlp_ratio, layer_norm_eps=mae.layer_norm_eps,
                     token_init_std=mae.token_init_std, norm_pix_eps=mae.norm_pix_eps)


def peak_lr(mae: MAEParams) -> float:
    """Tab. 5: lr = base_lr * batch_size / 256 (2.5e-4 for batch 64)."""
    return mae.base_lr * mae.batch_size / 256


def lr_at(step: float, *, steps_per_epoch: int, warmup_epochs: int, epochs: int, lr: float) -> float:
    """Per-iteration schedule: linear warm-up over warmup_epochs, then half-cycle cosine to 0.

    With e = step / steps_per_epoch (fractional epoch): lr·e/warmup if e < warmup, else
    lr·½(1 + cos(π (e − warmup)/(epochs − warmup))).
    """
    epoch = step / steps_per_epoch
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices and tokens (ndim >= 2), none on biases and norm weights."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def steps_per_epoch(n_frames: int, batch_size: int) -> int:
    """Iterations per epoch: full batches only (the last partial batch is dropped)."""
    if n_frames < batch_size:
        raise ValueError(f"{n_frames} frames are fewer than one batch of {batch_size} (mae.batch_size)")
    return n_frames // batch_size


def epoch_batches(n_frames: int, batch_size: int, sampling: str, generator: torch.Generator) -> torch.Tensor:
    """Frame indices of one epoch's batches [steps, batch]: with replacement, or a shuffled permutation."""
    steps = steps_per_epoch(n_frames, batch_size)
    if sampling == "with_replacement":
        return torch.randint(n_frames, (steps, batch_size), generator=generator)
    return torch.randperm(n_frames, generator=generator)[: steps * batch_size].view(steps, batch_size)


@dataclass
class PretrainRun:
    """What a pre-training run carries from epoch to epoch (all of it is checkpointed)."""

    model: MaskedAutoencoder
    optimizer: torch.optim.Optimizer
    sample_gen: torch.Generator
    mask_gen: torch.Generator
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)  # one row per epoch
    elapsed_s: float | None = 0.0  # wall seconds of the processes before this one (None: not recorded)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sample_gen": self.sample_gen.get_state(), "mask_gen": self.mask_gen.get_state(),
                "epoch": self.epoch, "history": self.history, "elapsed_s": self.elapsed_s}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sample_gen.set_state(state["sample_gen"])
        self.mask_gen.set_state(state["mask_gen"])
        self.epoch, self.history = state["epoch"], list(state["history"])
        self.elapsed_s = state.get("elapsed_s")  # absent in checkpoints written before it was recorded


def new_run(mae: MAEParams, frame_size_px: int, seeds: dict[str, int], device: torch.device) -> PretrainRun:
    """A freshly initialised model, optimiser and generators."""
    init_gen = torch.Generator().manual_seed(seeds["init"])
    model = MaskedAutoencoder(mae_config(mae, frame_size_px), generator=init_gen).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, mae.weight_decay), lr=peak_lr(mae),
                                  betas=tuple(mae.adam_betas))
    return PretrainRun(model, optimizer, torch.Generator().manual_seed(seeds["sample"]),
                       torch.Generator().manual_seed(seeds["mask"]))


def pretrain_seeds(mae: MAEParams, game: str) -> dict[str, int]:
    """The named seeds of a game's MAE pre-training (init, sample, mask), derived from mae.seed."""
    return {k: derive_seed(mae.seed, "mae", game, k) for k in ("init", "sample", "mask")}


def untrained_mae(mae: MAEParams, game: str, frame_size_px: int, device: torch.device | str = "cpu"
                  ) -> MaskedAutoencoder:
    """The game's MAE as pre-training initialises it (same architecture and init seed), never trained: the
    `mae_untrained` scorer's model (SPEC §13), in eval mode."""
    init_gen = torch.Generator().manual_seed(pretrain_seeds(mae, game)["init"])
    return MaskedAutoencoder(mae_config(mae, frame_size_px), generator=init_gen).to(device).eval()


def fingerprint(mae: MAEParams, seeds: Mapping[str, int], frames_path: Path) -> str:
    """Identity of a run: the `mae` parameters, the seeds and the exact frames file (spirl.common.checkpoints)."""
    return checkpoints.fingerprint("mae", mae, seeds, frames_path)


def train_epoch(run: PretrainRun, frames: np.ndarray, mae: MAEParams, autocast_dtype: torch.dtype | None,
                on_step: Callable[[], None] | None = None, check_every: int = 100) -> dict:
    """One epoch over `frames` (uint8 [N, H, W, 3]); returns the epoch's history row.

    Losses stay on the device; they are checked for non-finite values every `check_every`
    iterations (one host sync each) and at the end of the epoch.

    Raises:
        FloatingPointError: a non-finite loss (the previous epoch's checkpoint is kept).
    """
    model, device = run.model, next(run.model.parameters()).device
    model.train()
    batches = epoch_batches(len(frames), mae.batch_size, mae.sampling, run.sample_gen)  # [steps, batch]
    n_steps = len(batches)
    keep = int(model.config.num_patches * (1 - mae.mask_ratio))
    losses = torch.zeros(n_steps, device=device)
    lr = 0.0
    for i, idx in enumerate(batches):
        lr = lr_at(run.epoch * n_steps + i, steps_per_epoch=n_steps, warmup_epochs=mae.warmup_epochs,
                   epochs=mae.epochs, lr=peak_lr(mae))
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        imgs = frames_to_tensor(frames[idx.numpy()], device)  # [B, C, H, W] in [0, 1]
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss, _, _ = model(imgs, keep, run.mask_gen, mae.loss_on)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        losses[i] = loss.detach()
        if (i + 1) % check_every == 0 or i + 1 == n_steps:
            _check_finite(losses[: i + 1], run.epoch + 1, n_steps)
        if on_step is not None:
            on_step()
    run.epoch += 1
    row = {"epoch": run.epoch, "iterations": run.epoch * n_steps, "loss": losses.mean().item(), "lr_last": lr}
    run.history.append(row)
    return row


def _check_finite(losses: torch.Tensor, epoch: int, n_steps: int) -> None:
    """Raise FloatingPointError naming the first non-finite iteration of the epoch."""
    bad = torch.nonzero(~torch.isfinite(losses))
    if len(bad):
        i = int(bad[0])
        raise FloatingPointError(f"non-finite MAE loss {losses[i].item()} at epoch {epoch}, iteration "
                                 f"{i + 1}/{n_steps}; stopped, the checkpoint of the previous epoch is kept")


def save_model(model: MaskedAutoencoder, path: Path) -> None:
    """The trained MAE for later stages, as a deterministic .npz: the config (JSON) and the weights.

    Unlike torch.save (which writes a random serialization id), equal weights give equal bytes, so
    DVC and Snakemake see a re-run with the same result as unchanged. No pickle on load.
    """
    arrays = {f"state/{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    arrays["config_json"] = np.frombuffer(json.dumps(dataclasses.asdict(model.config)).encode(), dtype=np.uint8)
    write_npz(path, arrays)


def load_model(path: Path, device: torch.device | str = "cpu") -> MaskedAutoencoder:
    """Load a model written by save_model, in eval mode."""
    with np.load(path) as data:
        config = MAEConfig(**json.loads(data["config_json"].tobytes().decode()))
        state = {k.removeprefix("state/"): torch.from_numpy(data[k]) for k in data.files if k.startswith("state/")}
    model = MaskedAutoencoder(config)
    model.load_state_dict(state)
    return model.to(device).eval()
