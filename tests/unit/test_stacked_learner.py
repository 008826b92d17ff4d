"""The stacked learner's pieces: per-seed gradient clipping against torch's own, stacking and unstacking exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.agents.agent import Agent, build_qnetwork, frame_spec
from spirl.agents.multiseed import StackedAgents, clip_grad_norm_per_seed
from spirl.params import REPO_ROOT, load_params, replace, resolve_variant


def test_clipping_per_seed_equals_torch_clipping_each_seed_alone():
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, 5, generator=gen), torch.randn(3, 7, generator=gen)]
    grads[0][1] *= 1e-3  # seed 1's norm is below the limit: left exactly as it is
    grads[1][1] *= 1e-3
    expected = []
    for s in range(3):
        alone = [torch.nn.Parameter(g[s].clone()) for g in grads]
        for p, g in zip(alone, grads, strict=True):
            p.grad = g[s].clone()
        norm = torch.nn.utils.clip_grad_norm_(alone, max_norm=2.0)
        expected.append((norm, [p.grad for p in alone]))
    before = [g.clone() for g in grads]
    norms = clip_grad_norm_per_seed(grads, 2.0)
    for s, (norm, clipped) in enumerate(expected):
        torch.testing.assert_close(norms[s], norm)
        for g, want in zip(grads, clipped, strict=True):
            torch.testing.assert_close(g[s], want, rtol=1e-6, atol=1e-7)
    assert all(torch.equal(g[1], b[1]) for g, b in zip(grads, before, strict=True))
    assert float(torch.linalg.vector_norm(torch.cat([g[0].flatten() for g in grads]))) == pytest.approx(2.0, rel=1e-5)


def _agents(variant: str, seeds: list[int], **agent_overrides) -> list[Agent]:
    params = resolve_variant(load_params([REPO_ROOT / "params.yaml"]), variant)
    agent = replace(params.agent, **agent_overrides)
    spec = frame_spec(params.experiment.variants[variant].base, agent, 8, 64, 96, params.replay.embedding_dtype)
    return [Agent(build_qnetwork(spec, agent, 6, 4, torch.Generator().manual_seed(s)), agent, params.train,
                  torch.device("cpu"), torch.Generator().manual_seed(100 + s)) for s in seeds]


def test_stacking_then_syncing_leaves_every_agent_exactly_as_it_was():
    agents = _agents("spirl", [0, 1, 2])
    before = [{k: v.clone() for k, v in a.online.state_dict().items()} for a in agents]
    stacked = StackedAgents(agents)
    assert stacked.params["head.value_out.weight_mu"].shape[0] == 3
    stacked.sync()
    for agent, state in zip(agents, before, strict=True):
        assert all(torch.equal(agent.online.state_dict()[k], v) for k, v in state.items())


def test_stacked_acting_is_each_seeds_own_acting():
    agents = _agents("spirl", [0, 1])
    stacks = np.random.default_rng(0).standard_normal((2, 5, 4, 8, 64)).astype(np.float16)
    stacks[..., 3:, :] = 0  # three real rows per frame, the rest zero padding
    together = StackedAgents(agents).act(stacks)
    alone = np.stack([a.act(torch.from_numpy(stacks[s])) for s, a in enumerate(agents)])
    assert together.shape == (2, 5) and np.array_equal(together, alone)


def test_stacking_refuses_what_cannot_train_together():
    with pytest.raises(ValueError, match="at least 2"):
        StackedAgents(_agents("spirl", [0]))
    with pytest.raises(ValueError, match="one network architecture"):
        StackedAgents(_agents("spirl", [0]) + _agents("spirl", [1], hidden_size=128))
    late = _agents("spirl", [0, 1])
    late[1].updates = 3
    with pytest.raises(ValueError, match="same update count"):
        StackedAgents(late)
