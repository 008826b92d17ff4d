"""DE-Rainbow pieces (SPEC §7.5–7.6, §8): C51 projection, n-step returns, double DQN, loss, noisy dueling head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spirl.agents import rainbow
from spirl.agents.rainbow import (
    DuelingC51Head,
    NoisyLinear,
    c51_loss,
    double_dqn_target,
    expected_q,
    linear_schedule,
    n_step_return,
    per_beta,
    project_distribution,
    scale_gradient,
    support,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


Z5 = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
P5 = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15])


def _project_one(probs: torch.Tensor, ret: float, disc: float, z: torch.Tensor) -> torch.Tensor:
    return project_distribution(probs.unsqueeze(0), torch.tensor([ret]), torch.tensor([disc]), z)[0]


def _naive_projection(probs: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor,
                      z: torch.Tensor) -> torch.Tensor:
    """Reference C51 projection, one sample and one atom at a time, in float64 Python arithmetic."""
    zs = [float(v) for v in z]
    v_min, v_max, n = zs[0], zs[-1], len(zs)
    dz = (v_max - v_min) / (n - 1)
    out = torch.zeros(probs.shape, dtype=torch.float64)
    for b in range(probs.shape[0]):
        for j in range(n):
            p = float(probs[b, j])
            tz = min(max(float(returns[b]) + float(discounts[b]) * zs[j], v_min), v_max)
            pos = (tz - v_min) / dz
            lo, hi = math.floor(pos), math.ceil(pos)
            if lo == hi:
                out[b, lo] += p
            else:
                out[b, lo] += p * (hi - pos)
                out[b, hi] += p * (pos - lo)
    return out


def test_support_is_linspace():
    assert torch.equal(support(-2.0, 2.0, 5), Z5)
    z = support(-10.0, 10.0, 51)
    assert z.shape == (51,) and z[0] == -10.0 and z[-1] == 10.0 and z[25] == 0.0
    torch.testing.assert_close(z[1:] - z[:-1], torch.full((50,), 0.4), rtol=0, atol=1e-6)
    torch.testing.assert_close(z, torch.linspace(-10.0, 10.0, 51), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="atoms"):
        support(-1.0, 1.0, 1)
    with pytest.raises(ValueError, match="v_max"):
        support(1.0, -1.0, 5)


def test_expected_q_hand_case():
    probs = torch.tensor([[[0.0, 0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.25, 0.75]]])
    q = expected_q(probs.clamp_min(1e-30).log(), Z5)  # [1, 3]
    torch.testing.assert_close(q, torch.tensor([[0.0, 0.0, 1.75]]), rtol=0, atol=1e-6)


def test_projection_exact_atoms_shift_and_clip():
    # R=1, d=1: Tz = [-1, 0, 1, 2, 3→2]; every mass moves up one atom, the top two share v_max
    torch.testing.assert_close(_project_one(P5, 1.0, 1.0, Z5), torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4]))
    # R=-1, d=1: Tz = [-3→-2, -2, -1, 0, 1]
    torch.testing.assert_close(_project_one(P5, -1.0, 1.0, Z5), torch.tensor([0.3, 0.3, 0.25, 0.15, 0.0]))
    # R=0, d=1: identity
    torch.testing.assert_close(_project_one(P5, 0.0, 1.0, Z5), P5)


def test_projection_past_v_max_puts_all_mass_on_last_atom():
    torch.testing.assert_close(_project_one(P5, 10.0, 1.0, Z5), torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(_project_one(P5, -10.0, 0.9, Z5), torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]))


def test_projection_terminal_puts_mass_around_return():
    torch.testing.assert_close(_project_one(P5, 0.5, 0.0, Z5), torch.tensor([0.0, 0.0, 0.5, 0.5, 0.0]))
    # R=-0.25: b = 1.75 → 0.25 on z=-1, 0.75 on z=0
    torch.testing.assert_close(_project_one(P5, -0.25, 0.0, Z5), torch.tensor([0.0, 0.25, 0.75, 0.0, 0.0]))
    # R exactly on an atom: no mass lost (l == u)
    torch.testing.assert_close(_project_one(P5, 1.0, 0.0, Z5), torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]))


def test_projection_fractional_hand_computed():
    # R=0.5, d=0.5: Tz = [-0.5, 0, 0.5, 1, 1.5], b = [1.5, 2, 2.5, 3, 3.5]
    # idx1: 0.1/2; idx2: 0.1/2 + 0.2 + 0.3/2; idx3: 0.3/2 + 0.25 + 0.15/2; idx4: 0.15/2
    expected = torch.tensor([0.0, 0.05, 0.4, 0.475, 0.075])
    torch.testing.assert_close(_project_one(P5, 0.5, 0.5, Z5), expected, rtol=0, atol=1e-6)
    # R=0.3, d=0.9: Tz = [-1.5, -0.6, 0.3, 1.2, 2.1→2], b = [0.5, 1.4, 2.3, 3.2, 4]
    # idx0: .05; idx1: .05 + .2·.6; idx2: .2·.4 + .3·.7; idx3: .3·.3 + .25·.8; idx4: .25·.2 + .15
    expected = torch.tensor([0.05, 0.17, 0.29, 0.29, 0.2])
    torch.testing.assert_close(_project_one(P5, 0.3, 0.9, Z5), expected, rtol=0, atol=1e-6)


def _random_batch(seed: int, batch: int, atoms: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    probs = torch.softmax(3.0 * torch.randn(batch, atoms, generator=g), dim=1)  # [B, atoms]
    returns = 12.0 * torch.randn(batch, generator=g)  # [B], some beyond ±10
    discounts = torch.rand(batch, generator=g)  # [B]
    discounts[::4] = 0.0  # terminals
    discounts[1::4] = 0.99 ** 20
    returns[2::8] = torch.round(returns[2::8] / 0.4) * 0.4  # returns on the atom grid
    return probs, returns, discounts


def test_projection_conserves_probability_on_random_inputs():
    probs, returns, discounts = _random_batch(0, 256, 51)
    out = project_distribution(probs, returns, discounts, support(-10.0, 10.0, 51))
    assert out.shape == (256, 51) and bool((out >= 0).all())
    torch.testing.assert_close(out.sum(dim=1), torch.ones(256), rtol=0, atol=1e-6)


def test_projection_matches_naive_loop():
    z = support(-10.0, 10.0, 51)
    probs, returns, discounts = _random_batch(1, 64, 51)
    out = project_distribution(probs, returns, discounts, z)
    ref = _naive_projection(probs, returns, discounts, z)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)
    out5 = project_distribution(probs[:, :5] / probs[:, :5].sum(1, keepdim=True), returns / 5, discounts, Z5)
    ref5 = _naive_projection(probs[:, :5] / probs[:, :5].sum(1, keepdim=True), returns / 5, discounts, Z5)
    torch.testing.assert_close(out5.double(), ref5, rtol=0, atol=1e-5)


def test_n_step_return_with_and_without_terminal():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 4)
    terminals = torch.tensor([
        [0, 1, 0, 0],  # ends after step 1: R = 1 + 0.5·2
        [0, 0, 0, 0],  # no terminal: R = 1 + 1 + 0.75 + 0.5, discount 0.5⁴
        [0, 0, 0, 1],  # ends at the last step: full sum, no bootstrap
        [1, 0, 1, 0],  # ends after step 0; later flags (next episode) are ignored
    ], dtype=torch.bool)
    returns, discounts = n_step_return(rewards, terminals, 0.5)
    torch.testing.assert_close(returns, torch.tensor([2.0, 3.25, 3.25, 1.0]), rtol=0, atol=1e-7)
    torch.testing.assert_close(discounts, torch.tensor([0.0, 0.0625, 0.0, 0.0]), rtol=0, atol=0)
    r_float, d_float = n_step_return(rewards, terminals.float(), 0.5)
    assert torch.equal(r_float, returns) and torch.equal(d_float, discounts)


def test_n_step_return_long_window():
    g = _gen(3)
    rewards = torch.randn(5, 20, generator=g)
    returns, discounts = n_step_return(rewards, torch.zeros(5, 20), 0.99)
    powers = torch.tensor([0.99**k for k in range(20)])
    torch.testing.assert_close(returns, (rewards * powers).sum(1))
    torch.testing.assert_close(discounts, torch.full((5,), 0.99**20))


def _log(p: list[list[float]]) -> torch.Tensor:
    return torch.tensor(p).log()


def test_double_dqn_uses_online_argmax_with_target_distribution():
    # online: Q(a0) > Q(a1); target: the reverse
    online = _log([[0.01, 0.01, 0.01, 0.01, 0.96], [0.96, 0.01, 0.01, 0.01, 0.01]]).unsqueeze(0)  # [1, 2, 5]
    target = _log([[0.01, 0.96, 0.01, 0.01, 0.01], [0.01, 0.01, 0.01, 0.96, 0.01]]).unsqueeze(0)  # [1, 2, 5]
    assert expected_q(online, Z5).argmax(1).item() == 0 and expected_q(target, Z5).argmax(1).item() == 1
    ret, disc = torch.tensor([1.0]), torch.tensor([1.0])
    out = double_dqn_target(online, target, ret, disc, Z5)
    # target's a0 distribution shifted up one atom (top two atoms clip onto v_max)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.01, 0.96, 0.01, 0.02]]), rtol=0, atol=1e-6)
    wrong = project_distribution(target[:, 1].exp(), ret, disc, Z5)
    assert not torch.allclose(out, wrong)


def test_double_dqn_target_has_no_gradient_and_batches():
    g = _gen(4)
    online = torch.log_softmax(torch.randn(6, 3, 51, generator=g), -1).requires_grad_()
    target = torch.log_softmax(torch.randn(6, 3, 51, generator=g), -1).requires_grad_()
    z = support(-10.0, 10.0, 51)
    ret, disc = torch.randn(6, generator=g), torch.full((6,), 0.8)
    out = double_dqn_target(online, target, ret, disc, z)
    assert not out.requires_grad and out.shape == (6, 51)
    best = expected_q(online, z).argmax(1)
    for b in range(6):
        ref = project_distribution(target[b, best[b]].exp().unsqueeze(0), ret[b:b + 1], disc[b:b + 1], z)
        torch.testing.assert_close(out[b:b + 1], ref.detach())


def test_c51_loss_is_weighted_cross_entropy():
    g = _gen(5)
    log_probs = torch.log_softmax(torch.randn(3, 4, 6, generator=g), -1).requires_grad_()
    actions = torch.tensor([2, 0, 3])
    target = torch.softmax(torch.randn(3, 6, generator=g), -1).requires_grad_()
    weights = torch.tensor([0.5, 1.0, 0.25], requires_grad=True)
    loss, per_sample = c51_loss(log_probs, actions, target, weights)
    by_hand = torch.stack([-(target[b] * log_probs[b, actions[b]]).sum() for b in range(3)]).detach()
    torch.testing.assert_close(per_sample, by_hand)
    torch.testing.assert_close(loss.detach(), (weights.detach() * by_hand).mean())
    assert not per_sample.requires_grad and loss.dim() == 0
    loss.backward()
    assert target.grad is None and weights.grad is None
    expected_grad = torch.zeros(3, 4, 6)
    for b in range(3):
        expected_grad[b, actions[b]] = -weights[b].detach() * target[b].detach() / 3
    torch.testing.assert_close(log_probs.grad, expected_grad)


def test_c51_loss_weights_scale_loss_not_priorities():
    g = _gen(6)
    log_probs = torch.log_softmax(torch.randn(4, 2, 5, generator=g), -1)
    target = torch.softmax(torch.randn(4, 5, generator=g), -1)
    actions = torch.tensor([0, 1, 1, 0])
    loss1, ps1 = c51_loss(log_probs, actions, target, torch.ones(4))
    loss3, ps3 = c51_loss(log_probs, actions, target, torch.full((4,), 3.0))
    torch.testing.assert_close(loss3, 3 * loss1)
    assert torch.equal(ps1, ps3)
    torch.testing.assert_close(loss1, ps1.mean())


def test_noisy_linear_eval_uses_mean_weights_train_is_noisy():
    layer = NoisyLinear(7, 5, 0.5, generator=_gen(7))
    x = torch.randn(3, 7, generator=_gen(8))
    layer.eval()
    assert torch.equal(layer(x), F.linear(x, layer.weight_mu, layer.bias_mu))
    layer.train()
    assert not torch.allclose(layer(x), F.linear(x, layer.weight_mu, layer.bias_mu))
    weight, bias = layer.noisy_weight_and_bias()
    torch.testing.assert_close(layer(x), F.linear(x, weight, bias))


def test_noisy_linear_init_bounds_and_sigma():
    layer = NoisyLinear(64, 32, 0.5, generator=_gen(9))
    bound = 1 / math.sqrt(64)
    mu_w, mu_b = layer.weight_mu.detach(), layer.bias_mu.detach()
    assert float(mu_w.abs().max()) <= bound and float(mu_b.abs().max()) <= bound
    assert float(mu_w.abs().max()) > 0.95 * bound  # spread over the whole interval
    assert torch.equal(layer.weight_sigma, torch.full((32, 64), 0.5 / 8))
    assert torch.equal(layer.bias_sigma, torch.full((32,), 0.5 / 8))
    assert sum(p.numel() for p in layer.parameters()) == 2 * (64 * 32 + 32)
    with pytest.raises(ValueError, match="sigma0"):
        NoisyLinear(4, 4, -0.1)
    with pytest.raises(ValueError, match="in_features"):
        NoisyLinear(0, 4, 0.5)


def test_noisy_linear_init_is_reproducible_and_leaves_global_rng():
    state = torch.random.get_rng_state()
    a, b = NoisyLinear(6, 4, 0.5, generator=_gen(10)), NoisyLinear(6, 4, 0.5, generator=_gen(10))
    assert torch.equal(torch.random.get_rng_state(), state)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert set(a.state_dict()) == {"weight_mu", "bias_mu", "weight_sigma", "bias_sigma", "noise_in", "noise_out"}


def test_noisy_linear_noise_is_factorised_and_seeded():
    layer = NoisyLinear(6, 4, 0.5, generator=_gen(11))
    layer.reset_noise(_gen(12))
    w1 = layer.noisy_weight_and_bias()[0].detach().clone()
    g = _gen(12)
    eps_in, eps_out = torch.randn(6, generator=g), torch.randn(4, generator=g)
    assert torch.equal(layer.noise_in, eps_in.sign() * eps_in.abs().sqrt())
    assert torch.equal(layer.noise_out, eps_out.sign() * eps_out.abs().sqrt())
    noise = (w1 - layer.weight_mu.detach()) / layer.weight_sigma.detach()  # [out, in]
    assert int(torch.linalg.matrix_rank(noise)) == 1
    torch.testing.assert_close(noise, torch.outer(layer.noise_out, layer.noise_in))
    layer.reset_noise(_gen(13))
    assert not torch.equal(layer.noisy_weight_and_bias()[0], w1)
    layer.reset_noise(_gen(12))
    assert torch.equal(layer.noisy_weight_and_bias()[0].detach(), w1)


def test_noisy_linear_state_dict_resumes_exactly():
    a = NoisyLinear(6, 4, 0.5, generator=_gen(14))
    a.reset_noise(_gen(15))
    b = NoisyLinear(6, 4, 0.5, generator=_gen(16))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 6, generator=_gen(17))
    assert torch.equal(a(x), b(x))


def test_scale_gradient_identity_forward_scaled_backward():
    x = torch.randn(4, 3, generator=_gen(18), requires_grad=True)
    y = scale_gradient(x, 0.25)
    assert torch.equal(y, x)
    upstream = torch.randn(4, 3, generator=_gen(19))
    (y * upstream).sum().backward()
    assert torch.equal(x.grad, upstream * 0.25)


def test_head_outputs_log_probabilities():
    head = DuelingC51Head(16, 32, 5, 11, 0.5, generator=_gen(20))
    x = torch.randn(3, 16, generator=_gen(21))
    for mode in (head.train, head.eval):
        mode()
        out = head(x)
        assert out.shape == (3, 5, 11)
        torch.testing.assert_close(out.exp().sum(-1), torch.ones(3, 5))
        torch.testing.assert_close(out, torch.log_softmax(head.logits(x), -1))


def test_head_dueling_construction():
    head = DuelingC51Head(4, 8, 3, 5, 0.5, generator=_gen(22)).eval()
    value_bias = torch.randn(5, generator=_gen(23))  # [atoms]
    adv_bias = torch.randn(3, 5, generator=_gen(24))  # [A, atoms]
    with torch.no_grad():
        head.value_out.weight_mu.zero_()
        head.value_out.bias_mu.copy_(value_bias)
        head.advantage_out.weight_mu.zero_()
        head.advantage_out.bias_mu.copy_(adv_bias.reshape(-1))
    x = torch.randn(2, 4, generator=_gen(25))
    expected = value_bias + adv_bias - adv_bias.mean(0, keepdim=True)  # [A, atoms]
    torch.testing.assert_close(head.logits(x), expected.expand(2, 3, 5))
    torch.testing.assert_close(head.logits(x).mean(1), value_bias.expand(2, 5))  # mean_a A cancels
    with torch.no_grad():  # a per-atom constant added to every action's advantage changes nothing
        head.advantage_out.bias_mu.add_(torch.arange(5.0).repeat(3))
    torch.testing.assert_close(head.logits(x), expected.expand(2, 3, 5))


def _input_and_param_grads(head: DuelingC51Head, x: torch.Tensor, upstream: torch.Tensor):
    head.zero_grad()
    xg = x.clone().requires_grad_()
    (head(xg) * upstream).sum().backward()
    return xg.grad, [p.grad.clone() for p in head.parameters()]


def test_head_scales_gradient_into_feature(monkeypatch):
    head = DuelingC51Head(16, 32, 4, 7, 0.5, generator=_gen(26))
    x = torch.randn(3, 16, generator=_gen(27))
    upstream = torch.randn(3, 4, 7, generator=_gen(28))
    scaled, params_scaled = _input_and_param_grads(head, x, upstream)
    monkeypatch.setattr(rainbow, "scale_gradient", lambda t, s: t)
    plain, params_plain = _input_and_param_grads(head, x, upstream)
    torch.testing.assert_close(scaled, plain / math.sqrt(2), rtol=1e-6, atol=0)
    for a, b in zip(params_scaled, params_plain, strict=True):
        assert torch.equal(a, b)  # only the gradient entering the feature is rescaled


def test_head_parameter_count_and_reset_noise():
    head = DuelingC51Head(128, 256, 18, 51, 0.5, generator=_gen(29))
    count = sum(p.numel() for p in head.parameters())
    print(f"DuelingC51Head(128, 256, 18, 51) parameters: {count}")
    # value: 2·(128·256 + 256) = 66,048 and 2·(256·51 + 51) = 26,214
    # advantage: 66,048 and 2·(256·918 + 918) = 471,852  → 630,162
    assert count == 630_162
    layers = (head.value_hidden, head.value_out, head.advantage_hidden, head.advantage_out)
    before = [layer.noise_out.clone() for layer in layers]
    head.reset_noise(_gen(30))
    after = [layer.noise_out.clone() for layer in layers]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    head.reset_noise(_gen(30))
    assert all(torch.equal(layer.noise_out, a) for layer, a in zip(layers, after, strict=True))


def test_linear_schedule():
    assert linear_schedule(0, 0.4, 1.0, 100_000) == 0.4
    assert linear_schedule(50_000, 0.4, 1.0, 100_000) == pytest.approx(0.7)
    assert linear_schedule(100_000, 0.4, 1.0, 100_000) == 1.0
    assert linear_schedule(150_000, 0.4, 1.0, 100_000) == 1.0
    assert linear_schedule(250, 1.0, 0.0, 1_000) == pytest.approx(0.75)
    assert linear_schedule(5, 1.0, 0.0, 0) == 0.0
    assert isinstance(linear_schedule(3, 1, 0, 10), float)


def test_per_beta_starts_at_the_first_learning_step():
    # 100K regime: 1,600 random steps; the first update is at env step 1,601, the last at 100K.
    assert per_beta(1, 0.4, 1601, 100_000) == 0.4  # the warm-up (beta unused there) stays at the start value
    assert per_beta(1601, 0.4, 1601, 100_000) == 0.4
    assert per_beta(1601 + 49_199, 0.4, 1601, 100_000) == pytest.approx(0.7, abs=1e-5)  # 49,199 of 98,399
    assert per_beta(100_000, 0.4, 1601, 100_000) == 1.0
    # Annealing from env step 0 instead would already be past 0.409 at the first update: the schedule differs.
    assert linear_schedule(1601, 0.4, 1.0, 100_000) > 0.409
