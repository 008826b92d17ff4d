"""A trained agent as a function of raw observation stacks (agent saliency, SPEC §16): each frame through the variant's
per-frame representation (SPIRL-family: scorer, selection, embedding; pixels: the gray frame), the stack through the
Q-network with the noise off, the expected Q-values out.

A stack is what the wrapper gives the agent: frame_stack raw frames, oldest first, all-zero frames before an
episode's start. Those padding frames are represented as zeros (the replay's rule); the real frames form one scorer
stream, started at the first real frame, as the frames of a training env do. Perturbation saliency asks for many
stacks that differ only in their newest frame: the frames before it are represented once per distinct prefix, the
scorer's memory after them is kept and given to a stream of its own for every newest frame (copies: no stack sees
another's frame). For a SPIRL-family agent the perturbed frame therefore goes through the whole representation, and
the map shows what the decision depends on, selection included.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch

from spirl.agents.agent import FrameSpec, QNetwork, build_qnetwork
from spirl.agents.rainbow import expected_q
from spirl.agents.represent import Represent
from spirl.params import AgentParams, ConfigError


def n_actions_from_weights(weights: Mapping[str, np.ndarray], atoms: int) -> int:
    """The action count a saved policy was trained with: its advantage output has A·atoms rows."""
    rows, value = weights["head.advantage_out.weight_mu"].shape[0], weights["head.value_out.weight_mu"].shape[0]
    if value != atoms or rows % atoms:
        raise ConfigError(f"weights do not fit agent.atoms = {atoms}: value rows {value}, advantage rows {rows}")
    return rows // atoms


def load_policy(spec: FrameSpec, agent: AgentParams, frames: int, weights: Mapping[str, np.ndarray]) -> QNetwork:
    """A trained run's Q-network from its weights.npz arrays (the variant's architecture, every tensor loaded)."""
    net = build_qnetwork(spec, agent, n_actions_from_weights(weights, agent.atoms), frames,
                         torch.Generator().manual_seed(0))
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}, strict=True)
    return net


class StackQ:
    """q(stacks [N, F, H, W, C] uint8) -> expected Q-values [N, A] of a trained agent (noise off)."""

    def __init__(self, network: QNetwork, represent: Represent, support: torch.Tensor,
                 device: torch.device | str = "cpu") -> None:
        self.network, self.represent, self.device = network.to(device), represent, torch.device(device)
        self.support = support.to(self.device)
        self._streams = 0  # a fresh key per stream this probe opens (never a training run's key)

    def _key(self) -> tuple[str, int]:
        self._streams += 1
        return ("agent-saliency probe", self._streams)

    def _prefix(self, prefix: np.ndarray, out: np.ndarray) -> tuple[object, bool]:
        """Represent the frames before the newest into out [F - 1, ...]; returns (the scorer's memory after them,
        whether the newest frame starts the stream: no real frame before it)."""
        real = [k for k in range(len(prefix)) if prefix[k].any()]
        if not real:
            return None, True
        key = self._key()
        for k in range(real[0], len(prefix)):
            out[k] = self.represent(prefix[k:k + 1], [key], [k == real[0]])[0]
        state = copy.deepcopy(self.represent.state(key))
        self.represent.forget([key])
        return state, False

    def representations(self, stacks: np.ndarray) -> np.ndarray:
        """Each frame of each stack as the agent's replay holds it. Args: stacks [N, F, H, W, C] uint8.
        Returns: [N, F, *spec.shape] in spec.dtype (padding frames zero)."""
        stacks = np.asarray(stacks)
        if stacks.ndim != 5 or stacks.dtype != np.uint8:
            raise ValueError(f"stacks must be uint8 [N, F, H, W, C], got {stacks.dtype} {stacks.shape}")
        n, f = stacks.shape[:2]
        spec = self.represent.spec
        out = np.zeros((n, f, *spec.shape), spec.dtype)
        groups: dict[bytes, list[int]] = {}
        for i in range(n):
            groups.setdefault(stacks[i, :-1].tobytes(), []).append(i)
        for members in groups.values():
            state, starts = self._prefix(stacks[members[0], :-1], out[members[0], :-1])
            out[members, :-1] = out[members[0], :-1]
            keys = [self._key() for _ in members]
            for key in keys:
                self.represent.restore(key, copy.deepcopy(state))
            out[members, -1] = self.represent(stacks[members, -1], keys, [starts] * len(keys))
            self.represent.forget(keys)
        return out

    @torch.no_grad()
    def __call__(self, stacks: np.ndarray) -> np.ndarray:
        """Expected Q-values [N, A] of the stacks, with the noisy layers' mean weights."""
        x = torch.as_tensor(self.representations(stacks), device=self.device)
        was_training = self.network.training
        self.network.eval()
        try:
            return expected_q(self.network(x), self.support).double().cpu().numpy()
        finally:
            self.network.train(was_training)

    def selected_patches(self, stack: np.ndarray) -> np.ndarray:
        """The patches the representation keeps of the stack's newest frame (SPIRL-family with a scorer), as patch
        indices; every patch for MAE-All. Args: stack [F, H, W, C] uint8. Returns: int64 [K]."""
        if self.represent.spec.kind != "embeddings":
            raise ValueError("a pixel agent selects no patches")
        stack = np.asarray(stack)
        state, starts = self._prefix(stack[:-1], np.zeros((len(stack) - 1, *self.represent.spec.shape),
                                                          self.represent.spec.dtype))
        key = self._key()
        self.represent.restore(key, state)
        indices, counts = self.represent.select(stack[-1:], [key], [starts])
        self.represent.forget([key])
        return indices[0, : int(counts[0])].cpu().numpy().astype(np.int64)
