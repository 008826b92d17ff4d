"""Offline training of the Wu mask on a game's random-policy frames (the pretrain_wu stage, SPEC §13).

One update is an Adam step on `wu.batch_size` (source, target) pairs (`train_step`); a run (`WuRun`) carries the
model, the optimiser, the pair generator and the loss history, all checkpointed (spirl.common.checkpoints, keyed by
`fingerprint`) so an interrupted run resumes exactly. The trained model goes to later stages as a deterministic .npz
(`save_model` / `load_model`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spirl.common import checkpoints
from spirl.common.io import write_npz
from spirl.common.seeding import derive_seed
from spirl.params import WuParams
from spirl.saliency.wu.data import gray_input, pair_indices
from spirl.saliency.wu.model import WuAttention, WuLossTerms, WuSettings, wu_loss


def train_step(model: WuAttention, optimizer: torch.optim.Optimizer, gray: torch.Tensor, source: torch.Tensor,
               target: torch.Tensor, settings: WuSettings) -> WuLossTerms:
    """One Adam step on a batch of pairs, its gradient clipped to a global norm of `settings.max_grad_norm`.

    The batch runs through the network `settings.micro_batch` pairs at a time, each part's loss weighted by its share
    of the batch before its backward pass, so the summed gradient is the whole batch's (every loss term is a mean
    over pairs and pixels, and nothing in the network mixes pairs); only float rounding depends on the split.
    Args: gray uint8 [F, 84, 84] all frames (`gray_frames`), any device; source, target LongTensor [B] indices
        into it (`pair_indices`). Returns: the batch's WuLossTerms, detached.
    """
    device = next(model.parameters()).device
    source, target = source.to(gray.device), target.to(gray.device)
    batch = len(target)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    sums = torch.zeros(len(WuLossTerms._fields), device=device)
    for start in range(0, batch, settings.micro_batch):
        part = slice(start, start + settings.micro_batch)
        x_s = gray_input(gray[source[part]], device)  # [b, 1, 84, 84]
        x_t = gray_input(gray[target[part]], device)
        share = len(x_t) / batch
        terms = wu_loss(model(x_s, x_t), x_t, settings)
        (terms.total * share).backward()
        sums += torch.stack([term.detach() for term in terms]) * share
    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
    optimizer.step()
    return WuLossTerms(*sums)


def settings_from_params(wu: WuParams) -> WuSettings:
    """The loss, optimiser and stopping settings of the `wu` params section."""
    return WuSettings(delta=float(wu.delta), mask_weight=float(wu.mask_weight), max_gap=wu.max_gap, lr=float(wu.lr),
                      batch_size=wu.batch_size, max_grad_norm=float(wu.max_grad_norm), micro_batch=wu.micro_batch,
                      plateau_window=wu.plateau.window_epochs, plateau_tolerance=float(wu.plateau.tolerance))


def wu_seeds(wu: WuParams, game: str) -> dict[str, int]:
    """The named seeds of a game's Wu-mask training (init, pairs), derived from wu.seed."""
    return {name: derive_seed(wu.seed, "wu", game, name) for name in ("init", "pairs")}


def updates_per_epoch(n_frames: int, batch_size: int) -> int:
    """Updates of one "epoch" (the loss curve's logging interval): ceil(n_frames / batch_size)."""
    if n_frames < 2 or batch_size < 1:
        raise ValueError(f"need >= 2 frames and a batch >= 1, got {n_frames} frames, batch {batch_size}")
    return -(-n_frames // batch_size)


def total_updates(pair_samples: int, batch_size: int) -> int:
    """Updates of the whole run: ceil(pair_samples / batch_size), the budget in pairs rounded up to a whole batch
    (SPEC §13: the released code's ≈2M pairs are 31,250 updates of 64)."""
    if pair_samples < 1 or batch_size < 1:
        raise ValueError(f"pair_samples and batch_size must be >= 1, got {pair_samples}, {batch_size}")
    return -(-pair_samples // batch_size)


def on_plateau(history: Sequence[Mapping], window: int, tolerance: float) -> bool:
    """The early stop of SPEC §13, defined here: True when the mean loss and the mean Ψ ("sparsity") over the last
    `window` history rows both lie within `tolerance` · |their mean over the `window` rows before|. False with fewer
    than 2 · window rows, or window 0 (never stop early)."""
    if window == 0 or len(history) < 2 * window:
        return False
    for column in ("loss", "sparsity"):
        last = sum(row[column] for row in history[-window:]) / window
        before = sum(row[column] for row in history[-2 * window:-window]) / window
        if abs(last - before) > tolerance * abs(before):
            return False
    return True


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
    plateau_at: int | None = None  # the update after which on_plateau stopped the run (None: it did not)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "pair_gen": self.pair_gen.get_state(), "sums": self.sums.cpu(), "updates": self.updates,
                "history": self.history, "elapsed_s": self.elapsed_s, "plateau_at": self.plateau_at}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.pair_gen.set_state(state["pair_gen"])
        self.sums = state["sums"].to(self.sums.device, torch.float64)
        self.updates, self.history = int(state["updates"]), [dict(row) for row in state["history"]]
        self.elapsed_s = state.get("elapsed_s")
        self.plateau_at = state.get("plateau_at")


def new_run(settings: WuSettings, seeds: Mapping[str, int], device: torch.device | str = "cpu") -> WuRun:
    """A freshly initialised model (orthogonal init from seeds["init"], channels-last layout), Adam and the pair
    generator."""
    model = WuAttention(torch.Generator().manual_seed(seeds["init"])).to(device).channels_last()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    return WuRun(model, optimizer, torch.Generator().manual_seed(seeds["pairs"]),
                 torch.zeros(len(LOSS_COLUMNS), dtype=torch.float64, device=device))


def fingerprint(wu: WuParams, seeds: Mapping[str, int], frames_path: Path) -> str:
    """Identity of a run: the `wu` parameters, the seeds and the exact frames file (spirl.common.checkpoints)."""
    return checkpoints.fingerprint("wu", wu, seeds, frames_path)


def train_until(run: WuRun, gray: torch.Tensor, episodes: torch.Tensor, settings: WuSettings, stop: int,
                per_epoch: int, total: int, on_step: Callable[[], None] | None = None, check_every: int = 100) -> None:
    """Train from run.updates up to `stop` updates (one Adam step on `settings.batch_size` pairs each), or until
    the loss and the mask reach a plateau (`on_plateau`, checked at each new history row; run.plateau_at is then set
    and no later call trains further).

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
    if run.plateau_at is not None:
        return
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
            if on_plateau(run.history, settings.plateau_window, settings.plateau_tolerance):
                _check_finite(losses[: i + 1], start, total)
                run.plateau_at = run.updates
        if on_step is not None:
            on_step()
        if run.plateau_at is not None:
            return


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
    """A model written by save_model, on `device`, in eval mode and the training's channels-last layout (so it
    scores bit for bit as the trained model did; every tensor must match WuAttention's)."""
    with np.load(path) as data:
        state = {name: torch.from_numpy(data[name]) for name in data.files}
    model = WuAttention(torch.Generator().manual_seed(0))
    model.load_state_dict(state)
    return model.to(device).channels_last().eval()
