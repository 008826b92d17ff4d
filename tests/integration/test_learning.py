"""The one training loop learns: on a tiny cue environment with a known optimal return, the pixel agent and
the patch-transformer agent (on fixed synthetic embeddings) reach >= 90% of it within a few thousand steps.

Steps per agent: the patch-transformer agent passes at 4,000; the pixel agent is only at 85-92% there
(evaluations every 1,000 steps on one machine: 4.8, 6.6, 7.3, 7.1, 6.9, 7.6, 7.7, 7.8 of 8), and which side of 90%
it landed on changed from one machine's CPU to another's (their kernels sum in another order), so it trains
8,000. 30 evaluation games (240 decisions) keep the evaluation's own noise small beside the margin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.agents.agent import frame_spec
from spirl.agents.represent import make_represent
from spirl.params import REPO_ROOT, load_params, replace, resolve_variant
from spirl.training.loop import run_training
from spirl.training.representation import StatelessRepresentation
from spirl.training.run import RunKey, TrainingRun

EPISODE, SIZE = 8, 48  # steps per episode: optimal return 8, random 8 / 3


class CueEnv:
    """Each step shows a bright bar in one of three places; the action naming it earns +1."""

    n_actions = 3

    def __init__(self, seed: int, mode: str) -> None:
        self.rng, self.t, self.cue = np.random.default_rng(seed), 0, 0
        self.frame = np.zeros((SIZE, SIZE, 3), np.uint8)

    def _show(self) -> None:
        self.cue = int(self.rng.integers(3))
        self.frame[:] = 20
        self.frame[:, self.cue * 16:(self.cue + 1) * 16] = 230

    def reset(self):
        self.t = 0
        self._show()
        return None, {}

    def step(self, action: int):
        reward = float(action == self.cue)
        self.t += 1
        self._show()
        done = self.t == EPISODE
        return None, reward, done, False, {"raw_reward": reward}


def cue_embeddings(frames: np.ndarray, k_max: int) -> np.ndarray:
    """Fixed synthetic per-frame embeddings: one real row that names the cue, zero padding after it."""
    table = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float16)
    cues = frames[:, 0, :, 0].reshape(len(frames), 3, 16).mean(-1).argmax(-1)  # which third is bright
    out = np.zeros((len(frames), k_max, 64), np.float16)
    out[:, 0] = table[cues]
    return out


@pytest.mark.parametrize(("variant", "steps"), [("de_rainbow", 8000), ("spirl", 4000)])
def test_agent_reaches_90_percent_of_the_optimal_return(variant, steps):
    params = resolve_variant(load_params([REPO_ROOT / "params.yaml"]), variant)
    train = replace(
        params.train, multi_step=3, lr=1e-3, learn_start_env_steps=200, target_update_updates=100,
        regimes={"100k": replace(params.train.regimes["100k"], total_env_steps=steps,
                                 replay_capacity_transitions=steps, eval_every_env_steps=steps)})
    params = replace(params, train=train, eval=replace(params.eval, n_envs=30),
                     atari=replace(params.atari, frame_size_px=SIZE),
                     runtime=replace(params.runtime, compile_learner=False))
    base = params.experiment.variants[variant].base
    spec = frame_spec(base, params.agent, 4, 64, SIZE, params.replay.embedding_dtype)
    represent = StatelessRepresentation(lambda f: cue_embeddings(f, 4)) if base == "spirl" else \
        make_represent(spec, params, None, 0, None)
    torch.manual_seed(0)
    run = TrainingRun(RunKey(variant, "100k", "Cue", 0), params, spec, represent, torch.device("cpu"),
                      env_factory=CueEnv)
    run_training([run], checkpoints=None, checkpoint_every=10**9, log=lambda message: None)
    (point,) = run.state.evals
    assert np.mean(point["returns"]) >= 0.9 * EPISODE, point["returns"]
    assert all(point["finished"])
