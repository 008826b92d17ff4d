"""Several seeds of one (variant, regime, game) trained in one process (runtime.seeds_per_job).

The S seeds' networks have one architecture, so their parameters are stacked along a new leading axis and one
`torch.func.vmap`-ped forward pass serves every seed: acting on [S, B, ...] stacks and the update on S batches.
Everything else stays per seed, exactly as in a single-seed job: each seed's Agent draws its own NoisyNet noise from
its own generator (same order: online, then target), each seed's loss is its own importance-weighted mean, its
gradient is clipped to its own global norm, and Adam (elementwise) runs on the stacked tensors, which is Adam on each
seed's slice. The seeds' own Agents are brought up to date by `sync` before they evaluate, checkpoint or are saved,
so checkpoints and outputs are those of single-seed jobs, and a group can resume from them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from spirl.agents.agent import Agent
from spirl.agents.networks import TransformerBlock
from spirl.agents.rainbow import c51_cross_entropy, double_dqn_target, expected_q

# torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing (clip_coef = max_norm / (norm + 1e-6)).
CLIP_EPS = 1e-6


def clip_grad_norm_per_seed(grads: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale each seed's gradients (slice s of every [S, ...] tensor) to global L2 norm ≤ max_norm, in place.

    Per seed, as torch.nn.utils.clip_grad_norm_: n_s = ‖(‖g_1[s]‖, ‖g_2[s]‖, ...)‖; g[s] ← g[s]·min(1, c/(n_s + 1e-6)).
    Args: grads, each [S, ...]; max_norm c. Returns: the norms before clipping, [S].
    """
    per_tensor = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], dim=1)  # [S, T]
    norms = torch.linalg.vector_norm(per_tensor, dim=1)  # [S]
    coef = (max_norm / (norms + CLIP_EPS)).clamp(max=1.0)  # [S]
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms


def _stacked_optimizer_state(agents: Sequence[Agent]) -> dict | None:
    """The seeds' Adam states stacked (moment tensors [S, ...]; the shared step count), or None before any step."""
    states = [agent.optimizer.state_dict() for agent in agents]
    if not states[0]["state"]:
        return None
    stacked = {}
    for index, entry in states[0]["state"].items():
        stacked[index] = {name: value.clone() if name == "step" else torch.stack([s["state"][index][name]
                                                                                   for s in states])
                          for name, value in entry.items()}
    return {"state": stacked, "param_groups": states[0]["param_groups"]}


class StackedAgents:
    """The Agents of a group of seeds as one learner (training.loop.Learner): stacked parameters, vmapped passes."""

    def __init__(self, agents: Sequence[Agent]) -> None:
        if len(agents) < 2:
            raise ValueError(f"StackedAgents needs at least 2 agents, got {len(agents)}")
        self.agents = list(agents)
        first = self.agents[0]
        if first.mlr is not None or first.train_params.augment != "none":
            raise ValueError("runtime.seeds_per_job > 1 trains plain Rainbow agents only: an MLR branch or "
                             "train.augment needs runtime.seeds_per_job 1")
        shapes = {k: v.shape for k, v in first.online.state_dict().items()}
        for agent in self.agents[1:]:
            if {k: v.shape for k, v in agent.online.state_dict().items()} != shapes:
                raise ValueError("the agents of a group must have one network architecture")
            if agent.updates != first.updates or agent.device != first.device:
                raise ValueError("the agents of a group must stand at the same update count on one device")
        self.device, self.support, self.train_params = first.device, first.support, first.train_params
        self.skeleton = copy.deepcopy(first.online).to("meta")  # structure only: functional_call supplies tensors
        for module in self.skeleton.modules():  # attention that vmap can batch (networks._attention_weights)
            if isinstance(module, TransformerBlock):
                module.written_out_attention = True
        self.params, self.buffers = stack_module_state([a.online for a in self.agents])  # {name: [S, ...]}
        target_params, self.target_buffers = stack_module_state([a.target for a in self.agents])
        self.target_params = {k: v.detach() for k, v in target_params.items()}
        self.optimizer = torch.optim.Adam(list(self.params.values()), lr=self.train_params.lr,
                                          eps=self.train_params.adam_eps, fused=self.device.type == "cuda")
        state = _stacked_optimizer_state(self.agents)
        if state is not None:
            self.optimizer.load_state_dict(state)
        self._noise = [(dict(a.online.named_buffers()), dict(a.target.named_buffers())) for a in self.agents]

    @property
    def updates(self) -> int:
        return self.agents[0].updates

    def _forward(self, params: dict, buffers: dict, stacks: torch.Tensor) -> torch.Tensor:
        """Every seed's network on its own stacks: [S, B, F, ...] -> log-probabilities [S, B, A, atoms]."""
        def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.skeleton, (p, b), (x,))
        return vmap(one)(params, buffers, stacks)

    @torch.no_grad()
    def act(self, stacks: np.ndarray) -> np.ndarray:
        """Greedy actions of each seed's noisy online network: stacks [S, B, ...] -> [S, B] int64."""
        x = torch.as_tensor(stacks, device=self.device)
        return expected_q(self._forward(self.params, self.buffers, x), self.support).argmax(-1).cpu().numpy()

    def _reset_noise(self) -> None:
        """Each seed draws new noise from its own generator, online then target (as Agent.learn), then restack."""
        for agent in self.agents:
            agent.online.reset_noise(agent.generator)
            agent.target.reset_noise(agent.generator)
        with torch.no_grad():
            for name in self.buffers:
                self.buffers[name].copy_(torch.stack([online[name] for online, _ in self._noise]))
                self.target_buffers[name].copy_(torch.stack([target[name] for _, target in self._noise]))

    def learn(self, batches: Sequence[dict[str, np.ndarray]]) -> tuple[list[float], list[np.ndarray]]:
        """One update of every seed on its own batch (Agent.learn per seed); losses [S] and priorities S × [B]."""
        if len(batches) != len(self.agents):
            raise ValueError(f"{len(self.agents)} seeds need {len(self.agents)} batches, got {len(batches)}")
        t = {k: torch.as_tensor(np.stack([b[k] for b in batches]), device=self.device) for k in batches[0]}
        n_seeds, batch = t["actions"].shape
        self._reset_noise()
        log_probs = self._forward(self.params, self.buffers, t["obs"])  # [S, B, A, atoms]
        with torch.no_grad():  # the target is row-wise, so the S·B rows go through it as one batch
            online_next = self._forward(self.params, self.buffers, t["next_obs"]).flatten(0, 1)
            target_next = self._forward(self.target_params, self.target_buffers, t["next_obs"]).flatten(0, 1)
            target = double_dqn_target(online_next, target_next, t["returns"].float().flatten(),
                                       t["discounts"].float().flatten(), self.support)  # [S·B, atoms]
        per_sample = c51_cross_entropy(log_probs.flatten(0, 1), t["actions"].long().flatten(), target)
        per_sample = per_sample.view(n_seeds, batch)  # [S, B]
        losses = (t["weights"].float() * per_sample).mean(dim=1)  # [S]: each seed's own loss
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # seeds share no parameter: slice s of each gradient is d loss_s / d theta_s
        clip_grad_norm_per_seed([p.grad for p in self.params.values()], self.train_params.grad_clip_norm)
        self.optimizer.step()
        for agent in self.agents:
            agent.updates += 1
        if self.updates % self.train_params.target_update_updates == 0:
            with torch.no_grad():
                for name, value in self.params.items():
                    self.target_params[name].copy_(value)
                for name, value in self.buffers.items():
                    self.target_buffers[name].copy_(value)
        priorities = per_sample.detach().cpu().numpy()
        return [float(x) for x in losses.detach().cpu()], list(priorities)

    def sync(self) -> None:
        """Write each seed's slice (networks and Adam state) back into its own Agent."""
        state = self.optimizer.state_dict()
        with torch.no_grad():
            for s, agent in enumerate(self.agents):
                agent.online.load_state_dict({k: v[s] for k, v in (*self.params.items(), *self.buffers.items())})
                agent.target.load_state_dict({k: v[s] for k, v in (*self.target_params.items(),
                                                                     *self.target_buffers.items())})
                if state["state"]:
                    agent.optimizer.load_state_dict({
                        "state": {i: {name: value.clone() if name == "step" else value[s].clone()
                                      for name, value in entry.items()} for i, entry in state["state"].items()},
                        "param_groups": state["param_groups"]})
