"""MAE pre-training schedule, optimiser groups, batches, resume and the non-finite-loss stop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spirl.params import REPO_ROOT, load_params, replace
from spirl.saliency import pretrain as P

SEEDS = {"init": 1, "sample": 2, "mask": 3}


@pytest.fixture(scope="module")
def mae():
    params = load_params([REPO_ROOT / "params.yaml"])
    return replace(params.mae, epochs=3, warmup_epochs=1, batch_size=8)


def frames(n: int = 40, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_lr_schedule_hand_values():
    kw = dict(steps_per_epoch=10, warmup_epochs=5, epochs=50, lr=2.5e-4)
    assert P.lr_at(0, **kw) == 0.0
    assert P.lr_at(25, **kw) == pytest.approx(2.5e-4 * 2.5 / 5)  # mid warm-up, per iteration
    assert P.lr_at(50, **kw) == pytest.approx(2.5e-4)  # end of warm-up: the peak
    assert P.lr_at(275, **kw) == pytest.approx(2.5e-4 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half-way: peak/2
    assert P.lr_at(500, **kw) == pytest.approx(0.0, abs=1e-15)


def test_peak_lr_is_base_times_batch_over_256():
    params = load_params([REPO_ROOT / "params.yaml"])
    assert P.peak_lr(params.mae) == pytest.approx(2.5e-4)


def test_param_groups_decay_matrices_and_tokens_not_biases_or_norms(mae):
    run = P.new_run(mae, 32, SEEDS, torch.device("cpu"))
    decay, no_decay = P.param_groups(run.model, 0.05)
    named = dict(run.model.named_parameters())
    decayed = {n for n, p in named.items() if any(p is q for q in decay["params"])}
    assert "cls_token" in decayed and "mask_token" in decayed and "patch_embed.weight" in decayed
    assert not any(n.endswith(".bias") for n in decayed)
    assert all(named[n].ndim >= 2 for n in decayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)


def test_epoch_batches_shapes_and_modes():
    gen = torch.Generator().manual_seed(0)
    with_repl = P.epoch_batches(100, 16, "with_replacement", gen)
    perm = P.epoch_batches(100, 16, "permutation", gen)
    assert with_repl.shape == perm.shape == (6, 16)  # the partial last batch is dropped
    assert len(set(perm.flatten().tolist())) == 96  # a permutation: no frame twice in an epoch
    assert with_repl.max() < 100
    with pytest.raises(ValueError, match="fewer than one batch"):
        P.steps_per_epoch(5, 8)


def _train(mae, data, epochs: int, run=None) -> P.PretrainRun:
    run = run or P.new_run(mae, data.shape[1], SEEDS, torch.device("cpu"))
    while run.epoch < epochs:
        P.train_epoch(run, data, mae, autocast_dtype=None)
    return run


def test_resume_from_checkpoint_equals_uninterrupted_run(mae, tmp_path):
    data = frames()
    straight = _train(mae, data, 3)
    first = _train(mae, data, 1)
    run_id = "same-run"
    P.save_checkpoint(first, tmp_path / "ckpt.pt", run_id)
    resumed = P.new_run(mae, data.shape[1], SEEDS, torch.device("cpu"))
    assert P.load_checkpoint(resumed, tmp_path / "ckpt.pt", run_id) == "resumed" and resumed.epoch == 1
    _train(mae, data, 3, resumed)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a checkpoint of another run is never mixed in
    other = P.new_run(mae, data.shape[1], SEEDS, torch.device("cpu"))
    assert P.load_checkpoint(other, tmp_path / "ckpt.pt", "other-run") == "stale" and other.epoch == 0
    assert P.load_checkpoint(other, tmp_path / "missing.pt", run_id) == "absent"


def test_fingerprint_changes_with_params_seeds_and_frames(mae, tmp_path):
    path = tmp_path / "frames.npz"
    path.write_bytes(b"abc")
    base = P.fingerprint(mae, SEEDS, path)
    assert base == P.fingerprint(mae, dict(SEEDS), path)
    assert base != P.fingerprint(replace(mae, epochs=4), SEEDS, path)
    assert base != P.fingerprint(mae, {**SEEDS, "mask": 4}, path)
    path.write_bytes(b"abd")
    assert base != P.fingerprint(mae, SEEDS, path)


def test_non_finite_loss_stops_with_a_clear_error(mae):
    run = P.new_run(mae, 32, SEEDS, torch.device("cpu"))
    with torch.no_grad():
        run.model.decoder_pred.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"non-finite MAE loss nan at epoch 1, iteration 1/5"):
        P.train_epoch(run, frames(), mae, autocast_dtype=None, check_every=1)
    assert run.epoch == 0 and run.history == []


def test_saved_model_round_trip(mae, tmp_path):
    run = _train(mae, frames(), 1)
    P.save_model(run.model, tmp_path / "model.npz")
    P.save_model(run.model, tmp_path / "again.npz")
    assert (tmp_path / "model.npz").read_bytes() == (tmp_path / "again.npz").read_bytes()  # deterministic
    loaded = P.load_model(tmp_path / "model.npz")
    assert loaded.config == run.model.config and not loaded.training
    for a, b in zip(loaded.state_dict().values(), run.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
