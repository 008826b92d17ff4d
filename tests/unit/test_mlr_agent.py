"""The MLR branch inside the Rainbow agent's update (SPEC §15.6-15.8, §15.11 #3-#4): gradients, the one-step-lagged
target, λ = 0 against no branch update for update, a learning check on a predictable sequence, resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from spirl.agents.agent import Agent, build_qnetwork, frame_spec
from spirl.agents.mlr.branch import MLRBranch
from spirl.agents.replay import PrioritizedReplay
from spirl.params import REPO_ROOT, load_params, replace, resolve_variant

N_ACTIONS = 5


@pytest.fixture(scope="module")
def tiny():
    """The `mlr` variant's recipe at a test's size: Nature CNN of 4 channels (d = 196), windows of 8, batch 4."""
    params = resolve_variant(load_params([REPO_ROOT / "params.yaml"]), "mlr")
    return replace(params, agent=replace(params.agent, cnn_channels=(4, 4, 4), hidden_size=16),
                   mlr=replace(params.mlr, window=8), train=replace(params.train, batch_size=4))


def _agent(p, seed=0, weight=None, branch=True) -> Agent:
    spec = frame_spec("de_rainbow", p.agent, 0, 0, 84, p.replay.embedding_dtype)
    net = build_qnetwork(spec, p.agent, N_ACTIONS, 4, torch.Generator().manual_seed(seed))
    mlr = MLRBranch(net, p.mlr, N_ACTIONS, 100 + seed, torch.Generator().manual_seed(200 + seed)) if branch else None
    return Agent(net, p.agent, p.train, torch.device("cpu"), torch.Generator().manual_seed(300 + seed),
                 mlr=mlr, mlr_weight=p.mlr.weight if weight is None else weight,
                 augment_generator=torch.Generator().manual_seed(400 + seed))


def _frame(t: int) -> np.ndarray:
    """A predictable sequence: a 12x12 bright square moving 4 px right per step on a dark background (period 18)."""
    frame = np.full((84, 84), 20, np.uint8)
    x = (4 * t) % 72
    frame[36:48, x:x + 12] = 230
    return frame


def _replay(p, rows=120, seed=0) -> PrioritizedReplay:
    replay = PrioritizedReplay(1000, (84, 84), np.uint8, 4, p.train.multi_step, 0.99, 0.5, "one", "batch",
                               np.random.default_rng(seed), exclude_newest=1 + p.train.multi_step + p.mlr.window)
    for t in range(rows):
        replay.append(_frame(t), t % N_ACTIONS, float(t % 3 == 0), t in (50, 97))
    return replay


def test_gradients_reach_the_trained_modules_and_never_the_target_copies(tiny):
    agent = _agent(tiny)
    batch = _replay(tiny).sample(4, 0.5, window=tiny.mlr.window)
    batch.pop("indices")
    captured = {}
    step = agent.optimizer.step
    agent.optimizer.step = lambda: captured.update(
        {name: p.grad for name, p in [*agent.online.named_parameters(), *(("mlr." + n, q) for n, q in
                                                                           agent.mlr.named_parameters())]}) or step()
    agent.learn(batch)
    nonzero = {name for name, g in captured.items() if g is not None and g.abs().sum() > 0}
    for name in ("encoder.conv1.weight", "head.value_hidden.weight_mu", "head.advantage_hidden.weight_mu",
                 "mlr.predictor.linear.weight", "mlr.decoder.action_embed.weight", "mlr.decoder.blocks.0.qkv.weight",
                 "mlr.decoder.blocks.1.fc2.bias"):
        assert name in nonzero, name
    assert not any(name.startswith("mlr.target.") for name in captured if captured[name] is not None)
    assert all(not p.requires_grad for p in agent.mlr.target.parameters())
    assert torch.isfinite(agent.mlr_loss) and 0.0 <= float(agent.mlr_loss) <= 4.0


def test_target_holds_the_online_weights_of_one_step_earlier(tiny):
    agent = _agent(tiny)
    replay = _replay(tiny)
    for _ in range(3):
        before = copy.deepcopy(agent.online.encoder.state_dict())
        batch = replay.sample(4, 0.5, window=tiny.mlr.window)
        batch.pop("indices")
        agent.learn(batch)
        for name, value in agent.mlr.target.encoder.state_dict().items():
            torch.testing.assert_close(value, before[name], rtol=0, atol=0)  # the weights this update started from
        assert any(not torch.equal(v, agent.online.encoder.state_dict()[k]) for k, v in before.items())


def test_weight_zero_updates_exactly_as_no_branch(tiny):
    """mlr_base = mlr with λ = 0: the branch's draws are its own and its zero gradient moves nothing of the RL nets."""
    with_branch, without = _agent(tiny, weight=0.0), _agent(tiny, branch=False)
    replay = _replay(tiny)
    for _ in range(4):
        batch = replay.sample(4, 0.5, window=tiny.mlr.window)
        batch.pop("indices")
        loss_a, prio_a = with_branch.learn(batch)
        loss_b, prio_b = without.learn({k: v for k, v in batch.items() if not k.startswith("window_")})
        assert loss_a == loss_b
        np.testing.assert_array_equal(prio_a, prio_b)
    for (name, a), b in zip(with_branch.online.state_dict().items(), without.online.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_a_predictable_sequence_drives_the_loss_down(tiny):
    """With the square's motion fully predictable, 150 updates take L_MLR from ~2 to under 0.5 (MLR loss alone)."""
    p = replace(tiny, train=replace(tiny.train, batch_size=8))
    agent = _agent(p)
    replay = _replay(p, rows=200)
    losses = []
    for _ in range(150):
        batch = replay.sample(8, 0.5, window=p.mlr.window)
        t = {k: torch.as_tensor(v) for k, v in batch.items() if k.startswith("window_")}
        loss = agent.mlr.loss(agent.online, t["window_obs"], t["window_actions"], t["window_alive"], torch.ones(8))
        agent.mlr.after_forward(agent.online)
        agent.optimizer.zero_grad()
        loss.backward()
        agent.optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[:5]) > 1.0
    assert np.mean(losses[-20:]) < 0.5
    assert float(agent.mlr.last_cosine) > 0.75


def test_resume_continues_update_for_update(tiny):
    replay = _replay(tiny)
    batches = []
    for _ in range(4):
        batch = replay.sample(4, 0.5, window=tiny.mlr.window)
        batch.pop("indices")
        batches.append(batch)
    straight = _agent(tiny)
    for batch in batches:
        straight.learn(batch)
    first = _agent(tiny)
    for batch in batches[:2]:
        first.learn(batch)
    resumed = _agent(tiny, seed=0)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    for batch in batches[2:]:
        resumed.learn(batch)
    for (name, a), b in zip(straight.online.state_dict().items(), resumed.online.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for (name, a), b in zip(straight.mlr.state_dict().items(), resumed.mlr.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def _window_tensors(p, seed=0):
    batch = _replay(p, seed=seed).sample(4, 0.5, window=p.mlr.window)
    return {k: torch.as_tensor(v) for k, v in batch.items() if k.startswith("window_")}


@pytest.mark.parametrize(("scale", "bound"), [("faithful", 255.0), ("normalized", 1.0)])
def test_masked_stream_scale_flag(tiny, scale, bound):
    """SPEC §15.2's quirk: the masked stream reaches the encoder on 0-255 (faithful), or on 0-1 (normalized)."""
    p = replace(tiny, mlr=replace(tiny.mlr, masked_scale=scale))
    agent, t, seen = _agent(p), _window_tensors(p), []
    record = lambda m, args, out: seen.append(float(args[0].max()))  # noqa: E731
    hooks = [agent.online.encoder.conv1.register_forward_hook(record),
             agent.mlr.target.encoder.conv1.register_forward_hook(record)]
    agent.mlr.loss(agent.online, t["window_obs"], t["window_actions"], t["window_alive"], torch.ones(4))
    for hook in hooks:
        hook.remove()
    masked, target = seen  # the online encoder reads the masked stream, the target copy the clean one
    assert 0.5 * bound < masked <= bound * 1.1 + 1e-6  # augmented: an intensity factor of at most 1.1
    assert 0.5 < target <= 1.1 + 1e-6  # the target stream is on 0-1 either way


def test_window_end_flag_masks_only_in_mask_mode(tiny):
    dead = lambda p: (lambda t: _agent(p).mlr.loss(  # noqa: E731
        _agent(p).online, t["window_obs"], t["window_actions"], torch.zeros_like(t["window_alive"]), torch.ones(4)))
    masked = replace(tiny, mlr=replace(tiny.mlr, window_end="mask"))
    t = _window_tensors(tiny)
    assert float(dead(masked)(t)) == 0.0  # every step after a terminal: nothing counts
    assert float(dead(tiny)(t)) > 0.1  # the released rule: every step counts, alive or not


def test_target_lag_none_reads_the_online_networks(tiny):
    p = replace(tiny, mlr=replace(tiny.mlr, target_lag="none"))
    agent, replay = _agent(p), _replay(p)
    initial = copy.deepcopy(agent.mlr.target.encoder.state_dict())
    for _ in range(2):
        batch = replay.sample(4, 0.5, window=p.mlr.window)
        batch.pop("indices")
        agent.learn(batch)
    for name, value in agent.mlr.target.encoder.state_dict().items():  # the copy is never synced, nor read
        assert torch.equal(value, initial[name]), name
    t = _window_tensors(p)
    with torch.no_grad():  # the same draws give the same loss whatever the unused copy holds
        agent.mlr.target.encoder.conv1.weight.add_(1.0)
        a = agent.mlr.loss(agent.online, t["window_obs"], t["window_actions"], t["window_alive"], torch.ones(4))
        agent.mlr.target.encoder.conv1.weight.sub_(1.0)
    assert torch.isfinite(a)
