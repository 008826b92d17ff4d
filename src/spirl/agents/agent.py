"""The one Rainbow agent (SPEC §7-§8): a feature encoder + the dueling noisy C51 head, acting, and the
double-DQN n-step C51 update with PER weights, gradient clipping and hard target copies.

The encoder is chosen by the variant's base method: `spirl` -> the patch transformer on per-frame
(K_max, 64) embedding matrices; `de_rainbow` -> the data-efficient CNN on stacked pixels (gray84 or rgb96).
Noise: the online and target networks draw fresh noise once per update (from the agent's generator);
acting uses the online network's current noise; evaluation uses the mean weights (noise off).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spirl.agents.networks import PatchTransformerEncoder, PixelEncoder
from spirl.agents.rainbow import DuelingC51Head, c51_loss, double_dqn_target, expected_q, support
from spirl.params import AgentParams, TrainParams


@dataclass(frozen=True)
class FrameSpec:
    """What the replay stores per frame and the network reads: shape and dtype."""

    kind: str  # "embeddings" | "gray84" | "rgb96"
    shape: tuple[int, ...]
    dtype: np.dtype


def frame_spec(base: str, agent: AgentParams, k_max: int, embed_dim: int, frame_size_px: int,
               embedding_dtype: str) -> FrameSpec:
    """Per-frame storage of a variant: embeddings [K_max, D] for spirl, pixels for de_rainbow."""
    if base == "spirl":
        return FrameSpec("embeddings", (k_max, embed_dim), np.dtype(embedding_dtype))
    if agent.pixels == "gray84":
        return FrameSpec("gray84", (84, 84), np.dtype(np.uint8))
    return FrameSpec("rgb96", (frame_size_px, frame_size_px, 3), np.dtype(np.uint8))


def real_rows(x: torch.Tensor) -> torch.Tensor:
    """Selected patches per frame of embedding stacks [B, F, K, D] -> [B, F] (rows left-aligned, padding exactly 0)."""
    return (x.abs().sum(-1) > 0).sum(-1)


class QNetwork(nn.Module):
    """Encoder + dueling C51 head: stacks [B, F, *frame shape] -> log-probabilities [B, A, atoms]."""

    def __init__(self, spec: FrameSpec, encoder: nn.Module, head: DuelingC51Head) -> None:
        super().__init__()
        self.spec, self.encoder, self.head = spec, encoder, head

    def prepare(self, stacks: torch.Tensor) -> torch.Tensor:
        """Stored frames as the encoder reads them: uint8 pixels scaled to [0, 1] floats (what PixelEncoder does to
        uint8 input), embeddings unchanged. Lets one batch feed several networks with one conversion."""
        if stacks.dtype == torch.uint8:
            return stacks.to(next(self.parameters()).dtype) / 255.0
        return stacks

    def features(self, stacks: torch.Tensor) -> torch.Tensor:
        """The encoder's output [B, feature] for stacked frames."""
        if self.spec.kind == "embeddings":
            x = stacks.float()  # [B, F, K, D]
            return self.encoder(x, real_rows(x))
        if self.spec.kind == "rgb96":
            stacks = stacks.permute(0, 1, 4, 2, 3).flatten(1, 2)  # [B, F*3, H, W]
        return self.encoder(stacks)  # [B, F, 84, 84] gray stacks are channels already

    def forward(self, stacks: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(stacks))

    def reset_noise(self, generator: torch.Generator) -> None:
        self.head.reset_noise(generator)


def build_qnetwork(spec: FrameSpec, agent: AgentParams, n_actions: int, frames: int,
                   generator: torch.Generator) -> QNetwork:
    """The Q-network of SPEC §7 (embeddings) or §9.4 (pixels), initialised from `generator`."""
    if spec.kind == "embeddings":
        k_max, embed_dim = spec.shape
        encoder = PatchTransformerEncoder(embed_dim, agent.token_dim, agent.heads, agent.mlp_dim,
                                          agent.layer_norm_eps, agent.residual, agent.pool, agent.padding, frames,
                                          k_max, generator=generator)
    else:
        channels = frames * (1 if spec.kind == "gray84" else 3)
        encoder = PixelEncoder(channels, list(agent.cnn_channels), list(agent.cnn_kernels), list(agent.cnn_strides),
                               list(agent.cnn_paddings), spec.shape[0], generator=generator)
    head = DuelingC51Head(encoder.output_size, agent.hidden_size, n_actions, agent.atoms, agent.noisy_sigma0,
                          generator=generator)
    return QNetwork(spec, encoder, head)


class Agent:
    """Online and target networks, Adam, and the update rule of SPEC §8."""

    def __init__(self, network: QNetwork, agent: AgentParams, train: TrainParams, device: torch.device,
                 generator: torch.Generator, compile: bool = False) -> None:
        self.online = network.to(device)
        self.target = copy.deepcopy(self.online)
        for p in self.target.parameters():
            p.requires_grad_(False)
        # runtime.compile_learner: the update's three forward passes (and the backward) through torch.compile; acting
        # and the saved weights stay on the plain modules. Compiling is paid in the first update (compile_seconds).
        self._online_fn = torch.compile(self.online) if compile else self.online
        self._target_fn = torch.compile(self.target) if compile else self.target
        self.compiled, self.compile_seconds, self._warm = compile, 0.0, not compile
        # fused: one kernel for every parameter, on CPU too (4-5x faster than the per-parameter loop there; the same
        # update to float rounding, tests/test_agent.py)
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=train.lr, eps=train.adam_eps, fused=True)
        self.support = support(agent.v_min, agent.v_max, agent.atoms).to(device)
        self.train_params, self.device, self.generator = train, device, generator
        self.updates = 0

    @torch.no_grad()
    def act(self, stacks: torch.Tensor) -> np.ndarray:
        """Greedy actions of the noisy online network (training), [B] int64."""
        return expected_q(self.online(stacks.to(self.device)), self.support).argmax(1).cpu().numpy()

    @torch.no_grad()
    def act_eval(self, stacks: torch.Tensor) -> np.ndarray:
        """Greedy actions with the noise off (mean weights), for evaluation, [B] int64."""
        self.online.eval()
        try:
            return self.act(stacks)
        finally:
            self.online.train()

    def learn(self, batch: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
        """One update on a sampled batch; returns (loss, new priorities [B] = per-sample cross-entropy)."""
        first = not self._warm
        started = time.perf_counter()
        t = {k: torch.as_tensor(v, device=self.device) for k, v in batch.items()}
        self.online.reset_noise(self.generator)
        self.target.reset_noise(self.generator)
        log_probs = self._online_fn(t["obs"])  # [B, A, atoms]
        with torch.no_grad():
            next_obs = self.online.prepare(t["next_obs"])  # read by both networks: converted once
            target = double_dqn_target(self._online_fn(next_obs), self._target_fn(next_obs),
                                       t["returns"].float(), t["discounts"].float(), self.support)  # [B, atoms]
        loss, per_sample = c51_loss(log_probs, t["actions"].long(), target, t["weights"].float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.online.parameters(), self.train_params.grad_clip_norm)
        self.optimizer.step()
        self.updates += 1
        if self.updates % self.train_params.target_update_updates == 0:
            self.target.load_state_dict(self.online.state_dict())
        out = float(loss.detach()), per_sample.cpu().numpy()
        if first:  # this process's first compiled update: graph capture and code generation, then one update
            self.compile_seconds, self._warm = time.perf_counter() - started, True
        return out

    def state_dict(self) -> dict:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = state["updates"]
        self.generator.set_state(state["generator"])
