"""Data-Efficient Rainbow pieces (SPEC §7.5–7.6, §8): noisy dueling C51 head, n-step targets, C51 loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator | None) -> torch.Tensor:
    """U(−bound, bound) draws on the generator's device (CPU when generator is None, global RNG then)."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.empty(shape, device=device).uniform_(-bound, bound, generator=generator)


def _factorised_noise(size: int, generator: torch.Generator | None) -> torch.Tensor:
    """f(ε) = sign(ε)·√|ε| with ε ~ N(0, 1).

    Args: size; generator (its device is where the draw happens; None = global RNG).
    Returns: [size] float32.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    eps = torch.randn(size, generator=generator, device=device)  # [size]
    return eps.sign() * eps.abs().sqrt()


class NoisyLinear(nn.Module):
    """Factorised Gaussian noisy linear layer (Fortunato et al. 2018); mean weights only in eval mode.

    Parameters: weight_mu, weight_sigma [out, in]; bias_mu, bias_sigma [out].
    Buffers (saved in state_dict): noise_in = f(ε_in) [in], noise_out = f(ε_out) [out].
    Train: y = x (μ_w + σ_w ⊙ (f(ε_out) ⊗ f(ε_in)))ᵀ + μ_b + σ_b ⊙ f(ε_out).  Eval: y = x μ_wᵀ + μ_b.
    Init: μ ~ U(−1/√in, 1/√in); σ = sigma0/√in; first noise drawn, like μ, from `generator`.
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"NoisyLinear.{name} must be a positive integer, got {value!r}")
        if not sigma0 >= 0:
            raise ValueError(f"NoisyLinear.sigma0 must be >= 0, got {sigma0!r}")
        self.in_features, self.out_features, self.sigma0 = in_features, out_features, float(sigma0)
        bound = 1.0 / math.sqrt(in_features)
        sigma = self.sigma0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))  # [out, in]
        self.bias_mu = nn.Parameter(torch.empty(out_features))  # [out]
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma))  # [out, in]
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma))  # [out]
        self.register_buffer("noise_in", torch.zeros(in_features))  # [in]
        self.register_buffer("noise_out", torch.zeros(out_features))  # [out]
        with torch.no_grad():
            self.weight_mu.copy_(_uniform((out_features, in_features), bound, generator))
            self.bias_mu.copy_(_uniform((out_features,), bound, generator))
        self.reset_noise(generator)

    def reset_noise(self, generator: torch.Generator | None) -> None:
        """Draw new factorised noise f(ε_in) [in], f(ε_out) [out] from `generator` (in that order)."""
        with torch.no_grad():
            self.noise_in.copy_(_factorised_noise(self.in_features, generator))
            self.noise_out.copy_(_factorised_noise(self.out_features, generator))

    def noisy_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current noisy weight [out, in] = μ_w + σ_w ⊙ (f(ε_out) ⊗ f(ε_in)) and bias [out] = μ_b + σ_b ⊙ f(ε_out)."""
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.noise_out, self.noise_in)  # [out, in]
        bias = self.bias_mu + self.bias_sigma * self.noise_out  # [out]
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [..., in]. Returns: [..., out] (noisy in train mode, mean weights in eval mode)."""
        if not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight, bias = self.noisy_weight_and_bias()
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sigma0={self.sigma0}"


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; gradient × scale backward (functorch style, so it works under torch.func.vmap)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, scale: float) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs: tuple[torch.Tensor, float], output: torch.Tensor) -> None:
        ctx.scale = inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity in the forward pass; the gradient flowing back through it is multiplied by `scale`.

    Args: x [...]; scale float. Returns: x [...] (same values); ∂L/∂x = scale · ∂L/∂y.
    """
    return _ScaleGradient.apply(x, scale)


class DuelingC51Head(nn.Module):
    """Dueling, noisy, distributional (C51) head (SPEC §7.5): feature [B, in] → log p(z | s, a) [B, A, atoms].

    V = NoisyLinear(hidden→atoms)(ReLU(NoisyLinear(in→hidden)(h))) [B, 1, atoms];
    Adv = NoisyLinear(hidden→A·atoms)(ReLU(NoisyLinear(in→hidden)(h))) [B, A, atoms];
    logits = V + Adv − mean_a Adv; output = log_softmax over atoms; h = scale_gradient(feature, 1/√2).
    """

    def __init__(self, in_features: int, hidden: int, n_actions: int, atoms: int, sigma0: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if isinstance(n_actions, bool) or not isinstance(n_actions, int) or n_actions < 1:
            raise ValueError(f"DuelingC51Head.n_actions must be a positive integer, got {n_actions!r}")
        if isinstance(atoms, bool) or not isinstance(atoms, int) or atoms < 2:
            raise ValueError(f"DuelingC51Head.atoms must be an integer >= 2, got {atoms!r}")
        self.n_actions, self.atoms = n_actions, atoms
        self.value_hidden = NoisyLinear(in_features, hidden, sigma0, generator)
        self.value_out = NoisyLinear(hidden, atoms, sigma0, generator)
        self.advantage_hidden = NoisyLinear(in_features, hidden, sigma0, generator)
        self.advantage_out = NoisyLinear(hidden, n_actions * atoms, sigma0, generator)

    def logits(self, feature: torch.Tensor) -> torch.Tensor:
        """Args: feature [B, in]. Returns: dueling logits V + A − mean_a A, [B, A, atoms]."""
        h = scale_gradient(feature, 1.0 / math.sqrt(2.0))  # [B, in]
        value = self.value_out(F.relu(self.value_hidden(h)))  # [B, atoms]
        adv = self.advantage_out(F.relu(self.advantage_hidden(h)))  # [B, A*atoms]
        value = value.unsqueeze(1)  # [B, 1, atoms]
        adv = adv.view(-1, self.n_actions, self.atoms)  # [B, A, atoms]
        return value + adv - adv.mean(dim=1, keepdim=True)  # [B, A, atoms]

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """Args: feature [B, in]. Returns: log-probabilities over atoms, [B, A, atoms]."""
        return F.log_softmax(self.logits(feature), dim=-1)

    def reset_noise(self, generator: torch.Generator | None) -> None:
        """Redraw the noise of the four noisy layers (value hidden/out, then advantage hidden/out)."""
        for layer in (self.value_hidden, self.value_out, self.advantage_hidden, self.advantage_out):
            layer.reset_noise(generator)


def support(v_min: float, v_max: float, atoms: int) -> torch.Tensor:
    """Fixed C51 support z_i = v_min + i·Δz, Δz = (v_max − v_min)/(atoms − 1).

    Returns: [atoms] float32 (linspace computed in float64, each atom rounded once).
    """
    if isinstance(atoms, bool) or not isinstance(atoms, int) or atoms < 2:
        raise ValueError(f"atoms must be an integer >= 2, got {atoms!r}")
    if not v_max > v_min:
        raise ValueError(f"v_max ({v_max}) must exceed v_min ({v_min})")
    frac = torch.arange(atoms, dtype=torch.float64) / (atoms - 1)  # [atoms], exact 0.5 at the middle
    return (v_min + (v_max - v_min) * frac).to(torch.float32)  # float64 then rounded: z = 0 is exactly 0


def expected_q(log_probs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Q(s, a) = Σ_i p_i(s, a) z_i.

    Args: log_probs [B, A, atoms]; z (the support) [atoms]. Returns: [B, A].
    """
    return (log_probs.exp() * z).sum(dim=-1)


def n_step_return(rewards: torch.Tensor, terminals: torch.Tensor,
                  gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated n-step return R = Σ_{k≤m} γ^k r_k (m = first terminal step, else n−1) and its bootstrap discount.

    Args: rewards [B, n]; terminals [B, n] (bool or 0/1: episode ended after step k); gamma.
    Returns: returns [B]; discounts [B] = γ^n if no terminal in the window, else 0.
    """
    n = rewards.shape[1]
    alive_after = torch.cumprod(1.0 - terminals.to(rewards.dtype), dim=1)  # [B, n]: no terminal at steps ≤ k
    ones = torch.ones_like(alive_after[:, :1])  # [B, 1]
    alive_before = torch.cat([ones, alive_after[:, :-1]], dim=1)  # [B, n]: no terminal at steps < k
    powers = gamma ** torch.arange(n, dtype=torch.float64)  # [n]
    powers = powers.to(device=rewards.device, dtype=rewards.dtype)
    returns = (rewards * alive_before * powers).sum(dim=1)  # [B]
    discounts = alive_after[:, -1] * float(gamma) ** n  # [B]
    return returns, discounts


def project_distribution(next_probs: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor,
                         z: torch.Tensor) -> torch.Tensor:
    """C51 projection of the distribution of R + discount·z onto the fixed support z.

    Tz_j = clip(R + d·z_j, v_min, v_max); b_j = (Tz_j − v_min)/Δz; l = ⌊b_j⌋, u = ⌈b_j⌉;
    m_l += p_j (u − b_j), m_u += p_j (b_j − l) (l == u: m_l += p_j).
    Args: next_probs [B, atoms]; returns [B]; discounts [B]; z [atoms]. Returns: [B, atoms] (rows sum as inputs).
    """
    atoms = z.shape[0]
    v_min, v_max = z[0], z[-1]
    delta = (v_max - v_min) / (atoms - 1)
    tz = returns.unsqueeze(1) + discounts.unsqueeze(1) * z.unsqueeze(0)  # [B, atoms]
    tz = torch.minimum(torch.maximum(tz, v_min), v_max)  # [B, atoms]
    b = ((tz - v_min) / delta).clamp(0, atoms - 1)  # [B, atoms]
    lower, upper = b.floor(), b.ceil()  # [B, atoms]
    exact = (lower == upper).to(b.dtype)  # [B, atoms]
    mass_lower = (next_probs * (upper - b + exact)).to(next_probs.dtype)  # [B, atoms]
    mass_upper = (next_probs * (b - lower)).to(next_probs.dtype)  # [B, atoms]
    out = torch.zeros_like(next_probs)  # [B, atoms]
    out.scatter_add_(1, lower.long(), mass_lower)
    out.scatter_add_(1, upper.long(), mass_upper)
    return out


@torch.no_grad()
def double_dqn_target(online_next_log_probs: torch.Tensor, target_next_log_probs: torch.Tensor,
                      returns: torch.Tensor, discounts: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Projected double-DQN C51 target: a* = argmax_a Σ_i p_online_i(s', a) z_i; project p_target(s', a*).

    Args: online_next_log_probs, target_next_log_probs [B, A, atoms] at s_{t+n}; returns [B]; discounts [B];
    z [atoms]. Returns: target probabilities [B, atoms] (no gradient).
    """
    best = expected_q(online_next_log_probs, z).argmax(dim=1)  # [B]
    rows = torch.arange(best.shape[0], device=best.device)  # [B]
    next_probs = target_next_log_probs[rows, best].exp()  # [B, atoms]
    return project_distribution(next_probs, returns, discounts, z)


def c51_cross_entropy(log_probs: torch.Tensor, actions: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample C51 cross-entropy ℓ_b = −Σ_i m_{b,i} log p_i(s_b, a_b) (gradient only into log_probs).

    Args: log_probs [B, A, atoms] (online net at s_t); actions [B] long; target_probs [B, atoms]. Returns: ℓ [B].
    """
    rows = torch.arange(actions.shape[0], device=actions.device)  # [B]
    chosen = log_probs[rows, actions]  # [B, atoms]
    return -(target_probs.detach() * chosen).sum(dim=1)  # [B]


def c51_loss(log_probs: torch.Tensor, actions: torch.Tensor, target_probs: torch.Tensor,
             weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-weighted C51 cross-entropy: loss = mean_b(w_b ℓ_b) with ℓ of `c51_cross_entropy`.

    Args: log_probs [B, A, atoms] (online net at s_t); actions [B] long; target_probs [B, atoms]; weights [B].
    Returns: loss scalar (gradient only into log_probs); per_sample ℓ [B], detached (new PER priorities).
    """
    per_sample = c51_cross_entropy(log_probs, actions, target_probs)  # [B]
    loss = (weights.detach() * per_sample).mean()
    return loss, per_sample.detach()


def per_beta(env_step: int, start_value: float, first_learn_step: int, last_step: int) -> float:
    """PER IS exponent (SPEC §8): start_value at the first learning step, linear to 1 at the run's last step.

    beta(t) = start + clip((t - first) / (last - first), 0, 1) * (1 - start); the released code anneals from the
    start of learning, not from the first env step.
    """
    return linear_schedule(env_step - first_learn_step, start_value, 1.0, last_step - first_learn_step)


def linear_schedule(step: int, start_value: float, end_value: float, duration_steps: int) -> float:
    """v(t) = start + min(max(t, 0)/duration, 1)·(end − start); end_value from duration on (and if duration ≤ 0)."""
    if duration_steps <= 0:
        return float(end_value)
    frac = min(max(step, 0) / duration_steps, 1.0)
    return float(start_value + frac * (end_value - start_value))
