"""The one training loop (SPEC §8-§10): one env, PER replay, the Rainbow agent, evaluation points, resume.

Each new frame is turned into its per-frame representation once, when it arrives (SPIRL: error map,
selection and embedding; DE-Rainbow: the gray 84x84 frame); the replay stores those, never recomputed.
Everything random is a named stream derived from (seed, game, variant, regime), and the whole state is
checkpointed, so a killed run resumes exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spirl.agent import Agent, FrameSpec, build_qnetwork
from spirl.atari import AtariEnv, make_env
from spirl.config import Params, RegimeParams
from spirl.evaluation import eval_seeds, evaluate
from spirl.io import atomic_path
from spirl.mae import MaskedAutoencoder
from spirl.networks import to_gray84
from spirl.rainbow import linear_schedule
from spirl.replay import PrioritizedReplay
from spirl.saliency import embed_selected, error_map
from spirl.seeding import derive_seed
from spirl.selection import select_batched

Represent = Callable[[np.ndarray], np.ndarray]  # frames uint8 [B, H, W, 3] -> reps [B, *spec.shape]
EnvFactory = Callable[[int, str], AtariEnv]  # (seed, "train" | "eval") -> env; the Atari wrapper by default


def make_represent(spec: FrameSpec, params: Params, mae: MaskedAutoencoder | None, k_max: int,
                   autocast: torch.dtype | None) -> Represent:
    """The per-frame representation of a variant (computed once per frame, when it arrives).

    embeddings: error map (SPEC §4) -> selection (saliency.selection: dynamic K capped at K_max, fixed K =
    K_max, or all) -> SPEC §7 embedding, zero-padded to K_max; gray84: grayscale 84x84; rgb96: the frame.
    """
    if spec.kind == "gray84":
        return to_gray84
    if spec.kind == "rgb96":
        return lambda frames: np.array(frames, dtype=np.uint8)
    sal = params.saliency

    def represent(frames: np.ndarray) -> np.ndarray:
        errors = error_map(mae, frames, dtype=autocast)  # [B, N]
        indices, counts = select_batched(errors, sal.selection, k_max, sal.xscale)  # [B, K_max], [B]
        embeddings = embed_selected(mae, frames, indices, counts, k_max)  # [B, K_max, D]
        return embeddings.cpu().numpy().astype(spec.dtype)

    return represent


class Stopwatch:
    """Wall seconds by part of a run (env, represent, act, replay, learn, eval, checkpoint)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class RunKey:
    """What identifies a run: the DAG wildcards."""

    variant: str
    regime: str
    game: str
    seed: int

    def stream(self, name: str) -> int:
        """The seed of one named random stream of this run."""
        return derive_seed(self.seed, self.game, self.variant, self.regime, name)


@dataclass
class RunState:
    """Counters and records of a run that a checkpoint carries besides the agent, replay and env."""

    env_step: int = 0
    episode: int = 0
    episode_raw: float = 0.0
    episode_clipped: float = 0.0
    episode_length: int = 0
    losses: list[float] = field(default_factory=list)
    progress: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    stack: np.ndarray | None = None  # [F, *rep shape]: the current observation


class TrainingRun:
    """One (variant, regime, game, seed) run of SPEC §8-§10 on `params` (the variant's resolved params)."""

    def __init__(self, key: RunKey, params: Params, spec: FrameSpec, represent: Represent, device: torch.device,
                 prefill: dict[str, np.ndarray] | None = None, env_factory: EnvFactory | None = None) -> None:
        self.key, self.params, self.spec, self.represent, self.device = key, params, spec, represent, device
        self.regime: RegimeParams = params.train.regimes[key.regime]
        self.env_factory = env_factory or (lambda seed, mode: make_env(key.game, seed, mode, params.atari))
        self.env: AtariEnv = self.env_factory(key.stream("env"), "train")
        self.rng = np.random.Generator(np.random.PCG64(key.stream("actions")))
        net = build_qnetwork(spec, params.agent, self.env.n_actions, params.atari.frame_stack,
                             torch.Generator().manual_seed(key.stream("init")))
        self.agent = Agent(net, params.agent, params.train, device, torch.Generator().manual_seed(key.stream("noise")))
        self.replay = PrioritizedReplay(
            self.regime.replay_capacity_transitions, spec.shape, spec.dtype, params.atari.frame_stack,
            params.train.multi_step, params.train.discount, params.replay.priority_exponent,
            params.replay.new_priority, np.random.Generator(np.random.PCG64(key.stream("replay"))))
        self.state = RunState()
        self.clock = Stopwatch()
        self.learn_start = params.train.learn_start_env_steps
        if prefill is not None:  # DE-Rainbow-P: the pre-training transitions replace the random warm-up
            terminals = prefill["terminals"].copy()
            terminals[-1] = True  # the run's own first episode starts fresh after the recorded data
            self.replay.prefill(self.represent(prefill["frames"]), prefill["actions"], prefill["rewards_clipped"],
                                terminals)
            self.learn_start = 0
        self.online_steps = self.regime.total_env_steps - (params.train.learn_start_env_steps if prefill is not None
                                                           else 0)

    # --- acting -----------------------------------------------------------------------------------

    def _new_episode(self) -> None:
        with self.clock("env"):
            self.env.reset()
        with self.clock("represent"):
            rep = self.represent(self.env.frame[None])[0]
        self.state.stack = np.zeros((self.params.atari.frame_stack, *self.spec.shape), self.spec.dtype)
        self.state.stack[-1] = rep

    def _choose(self) -> int:
        if self.state.env_step < self.learn_start:
            return int(self.rng.integers(self.env.n_actions))  # epsilon = 1 before learning starts
        with self.clock("act"):
            return int(self.agent.act(torch.from_numpy(self.state.stack[None]))[0])

    def env_step(self) -> None:
        """Act, store the transition, learn when due, and log the episode when it ends."""
        s = self.state
        if s.stack is None:
            self._new_episode()
        action = self._choose()
        with self.clock("env"):
            _, reward, terminated, truncated, info = self.env.step(action)
        done = terminated or truncated
        with self.clock("replay"):
            self.replay.append(s.stack[-1], action, reward, done)
        s.env_step += 1
        s.episode_raw, s.episode_clipped = s.episode_raw + info["raw_reward"], s.episode_clipped + reward
        s.episode_length += 1
        if done:
            self._log_episode()
            self._new_episode()
        else:
            with self.clock("represent"):
                s.stack = np.concatenate([s.stack[1:], self.represent(self.env.frame[None])])
        if s.env_step > self.learn_start and (s.env_step - self.learn_start) % self.regime.env_steps_per_update == 0:
            self._learn()

    def _learn(self) -> None:
        beta = linear_schedule(self.state.env_step, self.params.replay.priority_weight_start, 1.0,
                               self.online_steps)
        with self.clock("replay"):
            batch = self.replay.sample(self.params.train.batch_size, beta)
        indices = batch.pop("indices")
        with self.clock("learn"):
            loss, priorities = self.agent.learn(batch)
        with self.clock("replay"):
            self.replay.update_priorities(indices, priorities)
        self.state.losses.append(loss)

    def _log_episode(self) -> None:
        s = self.state
        s.progress.append({"env_step": s.env_step, "episode": s.episode, "return_raw": s.episode_raw,
                           "return_clipped": s.episode_clipped, "length": s.episode_length,
                           "loss_mean": float(np.mean(s.losses)) if s.losses else float("nan"),
                           "updates": self.agent.updates})
        s.episode, s.episode_raw, s.episode_clipped, s.episode_length, s.losses = s.episode + 1, 0.0, 0.0, 0, []

    # --- evaluation ---------------------------------------------------------------------------------

    def evaluate(self) -> dict:
        """SPEC §10: n_envs eval-mode envs with distinct seeds, one episode each, lock-step, eps 0.001."""
        ev = self.params.eval
        seeds = eval_seeds(self.key.stream(f"eval@{self.state.env_step}"), ev.n_envs)
        envs = [self.env_factory(s, "eval") for s in seeds]
        rng = np.random.Generator(np.random.PCG64(self.key.stream(f"eval-eps@{self.state.env_step}")))
        result = evaluate(envs, self.represent, lambda st: self.agent.act_eval(torch.as_tensor(st)),
                          self.params.atari.frame_stack, ev.epsilon, rng)
        point = {"env_step": self.state.env_step, "returns": result.returns, "lengths": result.lengths,
                 "finished": result.finished}  # no wall time here: eval.json is deterministic (run.json has it)
        self.state.evals.append(point)
        return point

    def eval_due(self) -> bool:
        return self.state.env_step % self.regime.eval_every_env_steps == 0 or self.done()

    def done(self) -> bool:
        return self.state.env_step >= self.online_steps

    # --- checkpoints --------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Everything needed to continue exactly, written atomically."""
        state = {"key": self.key, "agent": self.agent.state_dict(), "replay": self.replay.state_dict(),
                 "env": self.env.get_state(), "rng": self.rng.bit_generator.state, "run": self.state,
                 "learn_start": self.learn_start}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def load(self, path: Path) -> bool:
        """Restore from `path` if it is a checkpoint of this run; returns whether it did."""
        if not path.is_file():
            return False
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["key"] != self.key:
            return False
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.env.set_state(state["env"])
        self.rng.bit_generator.state = state["rng"]
        self.state, self.learn_start = state["run"], state["learn_start"]
        return True


def run_training(run: TrainingRun, checkpoint: Path | None, checkpoint_every: int,
                 on_step: Callable[[], None] | None = None, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train to the regime's end with evaluations and periodic checkpoints (none if `checkpoint` is None).

    Returns: wall seconds of this process by part (env, represent, act, replay, learn, eval, checkpoint).
    """
    while not run.done():
        run.env_step()
        if run.eval_due():
            with run.clock("eval"):
                point = run.evaluate()
            log(f"eval at {point['env_step']}: mean return {np.mean(point['returns']):.1f}")
        if checkpoint is not None and (run.state.env_step % checkpoint_every == 0 or run.done()):
            with run.clock("checkpoint"):
                run.save(checkpoint)
        if on_step is not None:
            on_step()
    return dict(run.clock.seconds)
