"""The one Rainbow agent (SPEC §7-§8): a feature encoder + the dueling noisy C51 head, acting, and the
double-DQN n-step C51 update with PER weights, gradient clipping and hard target copies.

The encoder is chosen by the variant's base method: `spirl` -> the patch transformer on per-frame
(K_max, 64) embedding matrices; `de_rainbow` -> the data-efficient CNN on stacked pixels (gray84 or rgb96).
Noise: the online and target networks draw fresh noise once per update (from the agent's generator);
acting uses the online network's current noise; evaluation uses the mean weights (noise off).
Options of other recipes (MLR, SPEC §15.8): the encoder's output min-max renormalised (`agent.latent_renorm`), every
RL input of an update augmented (`train.augment`: the online input, and separately the double-DQN and target inputs
of the next observation; never when acting), and an auxiliary MLR branch (spirl.agents.mlr.branch) whose loss is
added with weight λ, under its two clipping groups instead of one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spirl.agents.mlr.augment import augment
from spirl.agents.mlr.branch import MLRBranch
from spirl.agents.mlr.loss import clip_groups
from spirl.agents.networks import PatchTransformerEncoder, PixelEncoder, minmax_renorm
from spirl.agents.rainbow import DuelingC51Head, c51_loss, double_dqn_target, expected_q, support
from spirl.agents.spacetime import DividedSpaceTimeEncoder, JointSpaceTimeEncoder
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

    def __init__(self, spec: FrameSpec, encoder: nn.Module, head: DuelingC51Head, renorm: bool = False) -> None:
        super().__init__()
        self.spec, self.encoder, self.head, self.renorm = spec, encoder, head, renorm

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
        latent = self.encoder(stacks)  # [B, F, 84, 84] gray stacks are channels already
        return minmax_renorm(latent) if self.renorm else latent

    def forward(self, stacks: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(stacks))

    def reset_noise(self, generator: torch.Generator) -> None:
        self.head.reset_noise(generator)


def build_qnetwork(spec: FrameSpec, agent: AgentParams, n_actions: int, frames: int,
                   generator: torch.Generator) -> QNetwork:
    """The Q-network of SPEC §7 (embeddings) or §9.4 (pixels), initialised from `generator`."""
    if spec.kind == "embeddings":
        k_max, embed_dim = spec.shape
        if agent.aggregator == "divided_st":  # SPEC §16: every patch of every frame, in index order
            encoder = DividedSpaceTimeEncoder(embed_dim, agent.st_token_dim, agent.st_heads, agent.st_mlp_ratio,
                                              agent.layer_norm_eps, frames, k_max, agent.st_readout, generator)
        else:  # SPEC §7 per-frame [cls] sequences, or §16's one sequence over the stack
            kind = JointSpaceTimeEncoder if agent.aggregator == "joint_st" else PatchTransformerEncoder
            encoder = kind(embed_dim, agent.token_dim, agent.heads, agent.mlp_dim, agent.layer_norm_eps,
                           agent.residual, agent.pool, agent.padding, frames, k_max, generator=generator)
    elif agent.aggregator != "cls_per_frame":
        raise ValueError(f"agent.aggregator {agent.aggregator!r} aggregates patch embeddings; a pixel agent needs "
                         "cls_per_frame (its value is not read)")
    else:
        channels = frames * (1 if spec.kind == "gray84" else 3)
        encoder = PixelEncoder(channels, list(agent.cnn_channels), list(agent.cnn_kernels), list(agent.cnn_strides),
                               list(agent.cnn_paddings), spec.shape[0], generator=generator)
    head = DuelingC51Head(encoder.output_size, agent.hidden_size, n_actions, agent.atoms, agent.noisy_sigma0,
                          generator=generator)
    if agent.latent_renorm and spec.kind == "embeddings":
        raise ValueError("agent.latent_renorm is for the pixel CNN (MLR's renorm); the patch transformer has none")
    return QNetwork(spec, encoder, head, renorm=agent.latent_renorm)


class Agent:
    """Online and target networks, Adam, and the update rule of SPEC §8."""

    def __init__(self, network: QNetwork, agent: AgentParams, train: TrainParams, device: torch.device,
                 generator: torch.Generator, compile: bool = False, mlr: MLRBranch | None = None,
                 mlr_weight: float = 1.0, augment_generator: torch.Generator | None = None) -> None:
        """Args beyond the networks': mlr, the MLR branch (built on `network`) and its weight λ; augment_generator,
        the draws of `train.augment` (required unless it is "none")."""
        if train.augment != "none" and augment_generator is None:
            raise ValueError(f"train.augment = {train.augment!r} needs an augment_generator")
        self.online = network.to(device)
        self.target = copy.deepcopy(self.online)
        for p in self.target.parameters():
            p.requires_grad_(False)
        # runtime.compile_learner: the update's three forward passes (and the backward) through torch.compile; acting,
        # the MLR branch and the saved weights stay on the plain modules. Compiling is paid in the first update
        # (compile_seconds).
        self._online_fn = torch.compile(self.online) if compile else self.online
        self._target_fn = torch.compile(self.target) if compile else self.target
        self.compiled, self.compile_seconds, self._warm = compile, 0.0, not compile
        # fused: one kernel for every parameter, on CPU too (4-5x faster than the per-parameter loop there; the same
        # update to float rounding, tests/test_agent.py)
        self.mlr, self.mlr_weight, self.augment_generator = mlr, mlr_weight, augment_generator
        self.mlr_loss = torch.tensor(float("nan"))  # L_MLR of the latest update (unweighted by λ)
        if mlr is not None:
            mlr.to(device)
        trained = [*self.online.parameters(), *(p for p in (mlr.parameters() if mlr else ()) if p.requires_grad)]
        self.optimizer = torch.optim.Adam(trained, lr=train.lr, eps=train.adam_eps, fused=True)
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

    def _augmented(self, stacks: torch.Tensor) -> torch.Tensor:
        """An RL input as the networks read it, augmented per image if `train.augment` says so."""
        x = self.online.prepare(stacks)
        return x if self.train_params.augment == "none" else augment(x, self.augment_generator)

    def learn(self, batch: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
        """One update on a sampled batch; returns (RL loss, new priorities [B] = per-sample cross-entropy).

        With the MLR branch the batch also holds window_obs, window_actions and window_alive (replay windows).
        """
        first = not self._warm
        started = time.perf_counter()
        t = {k: torch.as_tensor(v, device=self.device) for k, v in batch.items()}
        self.online.reset_noise(self.generator)
        self.target.reset_noise(self.generator)
        log_probs = self._online_fn(self._augmented(t["obs"]))  # [B, A, atoms]
        with torch.no_grad():
            if self.train_params.augment == "none":
                next_online = next_target = self.online.prepare(t["next_obs"])  # read by both: converted once
            else:  # separately augmented inputs of the double-DQN argmax and of the target network
                next_online, next_target = self._augmented(t["next_obs"]), self._augmented(t["next_obs"])
            target = double_dqn_target(self._online_fn(next_online), self._target_fn(next_target),
                                       t["returns"].float(), t["discounts"].float(), self.support)  # [B, atoms]
        loss, per_sample = c51_loss(log_probs, t["actions"].long(), target, t["weights"].float())
        total = loss
        if self.mlr is not None:
            mlr_loss = self.mlr.loss(self.online, t["window_obs"], t["window_actions"], t["window_alive"],
                                     t["weights"].float())
            total, self.mlr_loss = loss + self.mlr_weight * mlr_loss, mlr_loss.detach()
            self.mlr.after_forward(self.online)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.mlr is None:
            nn.utils.clip_grad_norm_(self.online.parameters(), self.train_params.grad_clip_norm)
        else:
            clip_groups(self.mlr.clip_groups(self.online), self.train_params.grad_clip_norm)
        self.optimizer.step()
        self.updates += 1
        if self.updates % self.train_params.target_update_updates == 0:
            self.target.load_state_dict(self.online.state_dict())
        out = float(loss.detach()), per_sample.cpu().numpy()
        if first:  # this process's first compiled update: graph capture and code generation, then one update
            self.compile_seconds, self._warm = time.perf_counter() - started, True
        return out

    def state_dict(self) -> dict:
        state = {"online": self.online.state_dict(), "target": self.target.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "updates": self.updates,
                 "generator": self.generator.get_state()}
        if self.augment_generator is not None:
            state["augment_generator"] = self.augment_generator.get_state()
        if self.mlr is not None:
            state["mlr"] = {"modules": self.mlr.state_dict(), "mask_rng": self.mlr.mask_rng.bit_generator.state,
                            "augment_rng": self.mlr.augment_rng.get_state()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = state["updates"]
        self.generator.set_state(state["generator"])
        if self.augment_generator is not None:
            self.augment_generator.set_state(state["augment_generator"])
        if self.mlr is not None:
            self.mlr.load_state_dict(state["mlr"]["modules"])
            self.mlr.mask_rng.bit_generator.state = state["mlr"]["mask_rng"]
            self.mlr.augment_rng.set_state(state["mlr"]["augment_rng"])
