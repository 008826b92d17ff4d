"""The Rainbow agent: network assembly per variant, parameter counts, acting, the update, target copies."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from spirl.agents.agent import Agent, build_qnetwork, frame_spec
from spirl.common.nn import parameter_count
from spirl.params import REPO_ROOT, load_params, replace, resolve_variant


@pytest.fixture(scope="module")
def params():
    return load_params([REPO_ROOT / "params.yaml"])


def noisy(i: int, o: int) -> int:
    """Parameters of a factorised NoisyLinear: mu and sigma for weights and biases."""
    return 2 * (i * o + o)


def head(features: int, actions: int) -> int:
    return noisy(features, 256) + noisy(256, 51) + noisy(features, 256) + noisy(256, actions * 51)


def make(params, variant: str, k_max: int = 28, seed: int = 0):
    p = resolve_variant(params, variant)
    base = p.experiment.variants[variant].base
    spec = frame_spec(base, p.agent, k_max, 64, 96, p.replay.embedding_dtype)
    net = build_qnetwork(spec, p.agent, 18, 4, torch.Generator().manual_seed(seed))
    return p, spec, net


def test_parameter_counts_pinned(params):
    _, spec, spirl = make(params, "spirl")
    assert spec.shape == (28, 64) and spec.dtype == np.float16
    assert parameter_count(spirl) == 14_816 + head(128, 18) == 644_978
    _, spec, pixels = make(params, "de_rainbow")
    assert spec.shape == (84, 84) and spec.dtype == np.uint8
    assert parameter_count(pixels) == 54_496 + head(1024, 18) == 1_602_162
    _, _, trainable = make(params, "spirl_pad_trainable")
    assert parameter_count(trainable) == 644_978 + 32
    print({"spirl": parameter_count(spirl), "de_rainbow": parameter_count(pixels)})


def _embedding_stacks(batch: int, counts: list[int], k_max: int = 28, seed: int = 0) -> torch.Tensor:
    x = torch.randn(batch, 4, k_max, 64, generator=torch.Generator().manual_seed(seed))
    for f, c in enumerate(counts):
        x[:, f, c:] = 0
    return x.half()


def test_forward_shapes_and_eval_is_deterministic(params):
    p, _, net = make(params, "spirl")
    agent = Agent(net, p.agent, p.train, torch.device("cpu"), torch.Generator().manual_seed(1))
    stacks = _embedding_stacks(5, [0, 3, 10, 28])
    assert agent.online(stacks).shape == (5, 18, 51)
    assert agent.act(stacks).shape == (5,)
    a, b = agent.act_eval(stacks), agent.act_eval(stacks)
    assert np.array_equal(a, b) and agent.online.training  # eval acting leaves the network in train mode
    _, _, pix = make(params, "de_rainbow")
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    assert pix(frames).shape == (3, 18, 51)
    p_rgb = replace(p, agent=replace(p.agent, pixels="rgb96"))
    spec = frame_spec("de_rainbow", p_rgb.agent, 28, 64, 96, "float16")
    rgb = build_qnetwork(spec, p_rgb.agent, 18, 4, torch.Generator().manual_seed(0))
    assert rgb(torch.randint(0, 256, (2, 4, 96, 96, 3), dtype=torch.uint8)).shape == (2, 18, 51)


def _batch(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"obs": _embedding_stacks(n, [5, 5, 5, 5], seed=seed).numpy(),
            "next_obs": _embedding_stacks(n, [5, 5, 5, 5], seed=seed + 1).numpy(),
            "actions": rng.integers(0, 18, n), "returns": rng.uniform(-1, 1, n).astype(np.float32),
            "discounts": np.full(n, 0.99**20, np.float32), "weights": np.ones(n, np.float32)}


def test_learning_reduces_the_loss_and_copies_the_target(params):
    p, _, net = make(params, "spirl")
    train = replace(p.train, target_update_updates=5, lr=1e-3)
    agent = Agent(net, p.agent, train, torch.device("cpu"), torch.Generator().manual_seed(2))
    batch = _batch(32, 0)
    batch["discounts"][:] = 0  # terminal targets: a fixed distribution to fit
    losses = []
    for i in range(1, 31):
        loss, priorities = agent.learn(batch)
        losses.append(loss)
        assert priorities.shape == (32,) and (priorities > 0).all()
        same = all(torch.equal(a, b) for a, b in zip(agent.online.state_dict().values(),
                                                     agent.target.state_dict().values(), strict=True))
        assert same == (i % 5 == 0), i  # hard copy exactly every target_update_updates updates
    assert losses[-1] < 0.7 * losses[0], losses
    assert agent.updates == 30


def test_learning_is_deterministic_and_resumes_exactly(params):
    def run(agent, n):
        return [agent.learn(_batch(8, i))[0] for i in range(n)]

    p, _, net_a = make(params, "spirl")
    a = Agent(net_a, p.agent, p.train, torch.device("cpu"), torch.Generator().manual_seed(3))
    straight = run(a, 6)
    _, _, net_b = make(params, "spirl")
    b = Agent(net_b, p.agent, p.train, torch.device("cpu"), torch.Generator().manual_seed(3))
    first = run(b, 3)
    state = b.state_dict()
    _, _, net_c = make(params, "spirl", seed=9)
    c = Agent(net_c, p.agent, p.train, torch.device("cpu"), torch.Generator().manual_seed(99))
    c.load_state_dict(state)
    assert first + [c.learn(_batch(8, i))[0] for i in range(3, 6)] == straight


def test_gradient_is_clipped_to_the_global_norm(params):
    p, _, net = make(params, "spirl")
    train = replace(p.train, grad_clip_norm=1e-3, lr=1.0)
    agent = Agent(net, p.agent, train, torch.device("cpu"), torch.Generator().manual_seed(4))
    agent.optimizer = torch.optim.SGD(agent.online.parameters(), lr=1.0)  # step = -grad: its norm is visible
    before = [q.detach().clone() for q in agent.online.parameters()]
    agent.learn(_batch(16, 1))
    with torch.no_grad():
        step = torch.sqrt(sum(((q - b) ** 2).sum() for q, b in zip(agent.online.parameters(), before, strict=True)))
    assert float(step) == pytest.approx(1e-3, rel=1e-3)


def _pixel_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"obs": rng.integers(0, 256, (n, 4, 84, 84), dtype=np.uint8),
            "next_obs": rng.integers(0, 256, (n, 4, 84, 84), dtype=np.uint8), "actions": rng.integers(0, 18, n),
            "returns": rng.uniform(-1, 1, n).astype(np.float32), "discounts": np.full(n, 0.99**10, np.float32),
            "weights": rng.uniform(0.2, 1, n).astype(np.float32)}


def _losses(agent: Agent, variant: str, updates: int) -> np.ndarray:
    batches = [_batch(8, i % 7) if variant == "spirl" else _pixel_batch(8, i % 7) for i in range(updates)]
    return np.array([agent.learn(b)[0] for b in batches])


@pytest.mark.parametrize("variant", ["spirl", "de_rainbow"])
def test_reworked_learner_matches_the_plain_update(params, variant, monkeypatch):
    """Today's learner (fused Adam, the [cls]-row shortcut, next_obs converted once) against the plain one (Adam's
    per-parameter loop, the whole transformer block, each network converting its own pixels): the same losses to
    1e-5 over 300 updates, and the same weights at the end."""
    import spirl.agents.networks

    p, _, net = make(params, variant)
    fast = Agent(net, p.agent, p.train, torch.device("cpu"), torch.Generator().manual_seed(5))
    got = _losses(fast, variant, 300)
    monkeypatch.setattr(spirl.agents.networks.PatchTransformerEncoder, "first_row_only", False)
    monkeypatch.setattr(type(fast.online), "prepare", lambda self, stacks: stacks)
    _, _, net = make(params, variant)
    plain = Agent(net, p.agent, p.train, torch.device("cpu"), torch.Generator().manual_seed(5))
    plain.optimizer = torch.optim.Adam(plain.online.parameters(), lr=p.train.lr, eps=p.train.adam_eps, foreach=False)
    want = _losses(plain, variant, 300)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(fast.online.state_dict().items(), plain.online.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("variant", ["spirl", "de_rainbow"])
def test_compiled_learner_matches_eager(params, variant):
    """runtime.compile_learner: from the same state, each compiled update gives eager's loss and priorities to 1e-5
    (100 updates, the compiled agent re-synced to the eager one after each); run on its own, its losses stay within
    1e-4 of eager's (generated kernels round differently, and the difference grows slowly with the updates). The
    first update pays the compilation (compile_seconds); the saved weights are the plain module's."""
    p, _, net = make(params, variant)
    eager = Agent(net, p.agent, p.train, torch.device("cpu"), torch.Generator().manual_seed(6))
    _, _, net = make(params, variant)
    compiled = Agent(net, p.agent, p.train, torch.device("cpu"), torch.Generator().manual_seed(6), compile=True)
    _, _, net = make(params, variant)
    alone = Agent(net, p.agent, p.train, torch.device("cpu"), torch.Generator().manual_seed(6), compile=True)
    steps = []
    for i in range(100):
        batch = _batch(8, i % 7) if variant == "spirl" else _pixel_batch(8, i % 7)
        compiled.load_state_dict(copy.deepcopy(eager.state_dict()))  # Adam state tensors are shared otherwise
        (want, want_prio), (got, got_prio) = eager.learn(batch), compiled.learn(batch)
        steps.append((got, want, alone.learn(batch)[0]))
        np.testing.assert_allclose(got_prio, want_prio, rtol=1e-5, atol=1e-6)
    got, want, free = np.array(steps).T
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(free, want, rtol=1e-4, atol=1e-6)
    assert eager.compile_seconds == 0.0 and compiled.compile_seconds > 0.0
    assert set(compiled.state_dict()["online"]) == set(eager.state_dict()["online"])


def test_aggregators_build_their_encoders_with_the_spec_counts(params):
    """agent.aggregator (SPEC §16): divst_all and jointst_spirl keep SPIRL's head and change only the encoder."""
    from spirl.agents.spacetime import DividedSpaceTimeEncoder, JointSpaceTimeEncoder

    _, spec, divided = make(params, "divst_all", k_max=144)
    assert isinstance(divided.encoder, DividedSpaceTimeEncoder) and spec.shape == (144, 64)
    assert parameter_count(divided.encoder) == 302_848 and divided.encoder.output_size == 128
    assert parameter_count(divided) == 302_848 + head(128, 18)
    _, _, joint = make(params, "jointst_spirl")
    assert isinstance(joint.encoder, JointSpaceTimeEncoder)
    assert parameter_count(joint) == 644_978 + 4 * 32  # spirl's + the temporal embedding
    stacks = _embedding_stacks(3, [5, 28, 0, 12])
    assert joint(stacks.float()).shape == (3, 18, 51)


def test_aggregator_rules_are_checked_per_variant(params):
    from spirl.params import ConfigError, check_consistency

    variants = dict(params.experiment.variants)
    bad = {"divst_dynamic": {"base": "spirl", "n_seeds": 1, "overrides": {"agent": {"aggregator": "divided_st"}}},
           "joint_pixels": {"base": "de_rainbow", "n_seeds": 1, "overrides": {"agent": {"aggregator": "joint_st"}}}}
    for name, spec in bad.items():
        experiment = replace(params.experiment, variants={**{k: v for k, v in variants.items()}, name: spec})
        with pytest.raises(ConfigError, match=f"experiment.variants.{name}: agent.aggregator"):
            check_consistency(replace(params, experiment=experiment))
