"""One training run of SPEC §8-§10: its key, random streams, env, replay and agent, the state a checkpoint carries,
the clock of its parts, and its evaluations.

A run steps in phases (`random_action`, `advance`, `observe`, `learn_due`) that `spirl.training.loop.step_group`
runs for a group of lock-stepped seeds. Everything random is a named stream derived from (seed, game, variant,
regime), and the whole state is checkpointed (`save`, `load`), so a killed run resumes exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spirl.agents.agent import Agent, FrameSpec, build_qnetwork
from spirl.agents.mlr.branch import MLRBranch
from spirl.agents.rainbow import per_beta
from spirl.agents.replay import PrioritizedReplay
from spirl.common.io import atomic_path
from spirl.common.seeding import derive_seed
from spirl.envs.atari import AtariEnv, make_env
from spirl.params import Params, RegimeParams
from spirl.training.evaluation import eval_seeds, evaluate
from spirl.training.representation import Representation, checked_representation

EnvFactory = Callable[[int, str], AtariEnv]  # (seed, "train" | "eval") -> env; the Atari wrapper by default


class Stopwatch:
    """Wall seconds by part of a run (env, represent, act, replay, learn, eval, checkpoint).

    Parts nest exclusively: each second counts toward the innermost open part only (a checkpoint written during an
    evaluation is checkpoint time, not eval time), so the parts add up to at most the wall time.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: list[list] = []  # [part, start of its current stretch], outermost first

    @contextlib.contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        if self._open:  # the enclosing part pauses
            outer = self._open[-1]
            self.seconds[outer[0]] = self.seconds.get(outer[0], 0.0) + start - outer[1]
        self._open.append([part, start])
        try:
            yield
        finally:
            end = time.perf_counter()
            _, began = self._open.pop()
            self.seconds[part] = self.seconds.get(part, 0.0) + end - began
            if self._open:  # and resumes
                self._open[-1][1] = end


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
    elapsed_s: dict | None = None  # wall seconds by part and in all ("wall") of every process before this one's
    #                                last checkpoint (None: none recorded, e.g. a checkpoint from before this field)
    mlr: list[tuple[float, float]] = field(default_factory=list)  # (L_MLR, mean cosine) of this episode's updates
    eval_progress: dict | None = None  # the evaluation under way at env_step (evaluation's snapshot, with
    #                                    its "env_step"), so a crash during a long evaluation loses little of it


class TrainingRun:
    """One (variant, regime, game, seed) run of SPEC §8-§10 on `params` (the variant's resolved params)."""

    def __init__(self, key: RunKey, params: Params, spec: FrameSpec, represent: Representation, device: torch.device,
                 prefill: dict[str, np.ndarray] | None = None, env_factory: EnvFactory | None = None) -> None:
        self.key, self.params, self.spec, self.device = key, params, spec, device
        self.represent = checked_representation(represent)
        self.regime: RegimeParams = params.train.regimes[key.regime]
        self.env_factory = env_factory or (lambda seed, mode: make_env(key.game, seed, mode, params.atari))
        self.env: AtariEnv = self.env_factory(key.stream("env"), "train")
        self.rng = np.random.Generator(np.random.PCG64(key.stream("actions")))
        self.replay_rng = np.random.Generator(np.random.PCG64(key.stream("replay")))  # PER sampling draws
        net = build_qnetwork(spec, params.agent, self.env.n_actions, params.atari.frame_stack,
                             torch.Generator().manual_seed(key.stream("init")))
        mlr = MLRBranch(net, params.mlr, self.env.n_actions, key.stream("mlr"),
                        torch.Generator().manual_seed(key.stream("mlr-init"))) if params.mlr.loss else None
        augment = torch.Generator().manual_seed(key.stream("augment")) if params.train.augment != "none" else None
        self.agent = Agent(net, params.agent, params.train, device, torch.Generator().manual_seed(key.stream("noise")),
                           compile=params.runtime.compile_learner, mlr=mlr, mlr_weight=params.mlr.weight,
                           augment_generator=augment)  # used by a group of one (StackedAgents: eager)
        self.window = params.mlr.window if params.mlr.loss else 0  # replay windows of the MLR branch
        self.replay = PrioritizedReplay(
            self.regime.replay_capacity_transitions, spec.shape, spec.dtype, params.atari.frame_stack,
            params.train.multi_step, params.train.discount, params.replay.priority_exponent,
            params.replay.new_priority, params.replay.is_weight_norm, self.replay_rng,
            exclude_newest=params.replay.exclude_newest)
        self.state = RunState()
        self.clock = Stopwatch()
        self.prior_s: dict[str, float] = {}  # elapsed_s of the checkpoint this process resumed from
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()  # CPU seconds: unlike wall time, blind to other load and pauses
        self.learn_start = params.train.learn_start_env_steps
        if prefill is not None:  # DE-Rainbow-P: the pre-training transitions replace the random warm-up
            terminals = prefill["terminals"].copy()
            terminals[-1] = True  # the run's own first episode starts fresh after the recorded data
            self.replay.prefill(self.represent(prefill["frames"]), prefill["actions"], prefill["rewards_clipped"],
                                terminals)
            self.learn_start = 0
        self.online_steps = self.regime.total_env_steps - (params.train.learn_start_env_steps if prefill is not None
                                                           else 0)

    # --- one environment step, in phases (spirl.training.loop.step_group runs them for a group of seeds) ---------

    def random_action(self) -> int | None:
        """The warm-up's uniform random action (epsilon = 1 before learning starts), else None (the agent acts)."""
        if self.state.env_step < self.learn_start:
            return int(self.rng.integers(self.env.n_actions))
        return None

    def advance(self, action: int) -> None:
        """Step the env with `action`, store the transition, and on an episode's end log it and reset the env.

        After an episode ends the stack is dropped (None): `observe` then starts a fresh one from the reset frame.
        """
        s = self.state
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
            with self.clock("env"):
                self.env.reset()
            s.stack = None

    def observe(self, rep: np.ndarray) -> None:
        """Push the representation of the env's current frame: onto the stack, or as a fresh [0, .., 0, rep]."""
        if self.state.stack is None:
            self.state.stack = np.zeros((self.params.atari.frame_stack, *self.spec.shape), self.spec.dtype)
            self.state.stack[-1] = rep
        else:
            self.state.stack = np.concatenate([self.state.stack[1:], rep[None]])

    def learn_due(self) -> bool:
        s = self.state
        return s.env_step > self.learn_start and (s.env_step - self.learn_start) % self.regime.env_steps_per_update == 0

    def beta(self) -> float:
        """PER importance-sampling exponent (SPEC §8): linear from its start value at the first learning step
        (env step learn_start + env_steps_per_update) to 1 at the run's last step (released code: from the start of
        learning)."""
        first = self.learn_start + self.regime.env_steps_per_update
        return per_beta(self.state.env_step, self.params.replay.priority_weight_start, first, self.online_steps)

    def record_auxiliary(self) -> None:
        """After an update: the MLR branch's loss and mean cosine (SPEC §15.7), if the run has one."""
        if self.agent.mlr is not None:
            self.state.mlr.append((float(self.agent.mlr_loss), float(self.agent.mlr.last_cosine)))

    def _log_episode(self) -> None:
        s = self.state
        row = {"env_step": s.env_step, "episode": s.episode, "return_raw": s.episode_raw,
               "return_clipped": s.episode_clipped, "length": s.episode_length,
               "loss_mean": float(np.mean(s.losses)) if s.losses else float("nan"), "updates": self.agent.updates}
        if self.agent.mlr is not None:  # MLR runs: the auxiliary loss and cosine, averaged over the episode's updates
            mlr = np.asarray(s.mlr, np.float64).reshape(-1, 2)
            row |= {"mlr_loss_mean": float(mlr[:, 0].mean()) if len(mlr) else float("nan"),
                    "mlr_cosine_mean": float(mlr[:, 1].mean()) if len(mlr) else float("nan")}
        s.progress.append(row)
        s.episode, s.episode_raw, s.episode_clipped, s.episode_length, s.losses = s.episode + 1, 0.0, 0.0, 0, []
        s.mlr = []

    # --- evaluation ---------------------------------------------------------------------------------

    def evaluate(self, save: Callable[[], None] | None = None) -> dict:
        """SPEC §10: n_envs eval-mode envs with distinct seeds, one episode each, lock-step, eps 0.001.

        With `save` (which writes this run's checkpoint), the evaluation's progress goes into the run's state every
        train.eval_checkpoint_every_s and `save` is called; an evaluation found there for this env step continues.
        """
        ev = self.params.eval
        seeds = eval_seeds(self.key.stream(f"eval@{self.state.env_step}"), ev.n_envs)
        envs = [self.env_factory(s, "eval") for s in seeds]
        rng = np.random.Generator(np.random.PCG64(self.key.stream(f"eval-eps@{self.state.env_step}")))
        streams = [(self.key, "eval", self.state.env_step, i) for i in range(len(envs))]  # this evaluation's own
        progress = getattr(self.state, "eval_progress", None)  # absent from checkpoints written before the field
        resume = progress if progress is not None and progress["env_step"] == self.state.env_step else None

        def keep(snapshot: dict) -> None:
            self.state.eval_progress = {**snapshot, "env_step": self.state.env_step}
            save()

        result = evaluate(envs, self.represent, lambda st: self.agent.act_eval(torch.as_tensor(st)),
                          self.params.atari.frame_stack, ev.epsilon, rng, streams=streams,
                          save=None if save is None else keep, save_every_s=self.params.train.eval_checkpoint_every_s,
                          resume=resume)
        self.state.eval_progress = None
        self.represent.forget(streams)  # the evaluation envs are gone: drop the scorer's memory of them
        point = {"env_step": self.state.env_step, "returns": result.returns, "lengths": result.lengths,
                 "finished": result.finished}  # no wall time here: eval.json is deterministic (run.json has it)
        self.state.evals.append(point)
        return point

    def eval_pending(self) -> bool:
        """Whether an evaluation is due at this env step and has not been recorded (none at step 0)."""
        step = self.state.env_step
        return step > 0 and self.eval_due() and all(point["env_step"] != step for point in self.state.evals)

    def eval_due(self) -> bool:
        return self.state.env_step % self.regime.eval_every_env_steps == 0 or self.done()

    def done(self) -> bool:
        return self.state.env_step >= self.online_steps

    # --- checkpoints --------------------------------------------------------------------------------

    def elapsed(self) -> dict[str, float]:
        """Wall seconds by part (the group's clock), in all ("wall"), and the process's CPU seconds ("cpu"), over
        every process of this run so far."""
        now = {**self.clock.seconds, "wall": time.perf_counter() - self.started,
               "cpu": time.process_time() - self.cpu_started}
        return {k: self.prior_s.get(k, 0.0) + now.get(k, 0.0) for k in dict.fromkeys([*self.prior_s, *now])}

    def save(self, path: Path) -> None:
        """Everything needed to continue exactly, written atomically."""
        self.state.elapsed_s = self.elapsed()
        # the replay's filled rows as tensors sharing its memory: torch.save streams them without a copy (a numpy
        # array would be pickled through a full in-memory copy: 2x a 400K buffer's gigabytes at every checkpoint)
        replay = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                  for k, v in self.replay.state_dict(copy=False).items()}
        state = {"key": self.key, "agent": self.agent.state_dict(), "replay": replay,
                 "represent": self.represent.state(self.key),  # the scorer's memory of this run's env
                 "env": self.env.get_state(), "rng": self.rng.bit_generator.state,
                 "replay_rng": self.replay_rng.bit_generator.state, "run": self.state,
                 "learn_start": self.learn_start}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def load(self, path: Path) -> bool:
        """Restore from `path` if it is a checkpoint of this run; returns whether it did."""
        if not path.is_file():
            return False
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["key"] != self.key or "replay_rng" not in state:  # another run's, or from before PER draws were saved
            return False
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.env.set_state(state["env"])
        self.rng.bit_generator.state = state["rng"]
        self.replay_rng.bit_generator.state = state["replay_rng"]
        self.state, self.learn_start = state["run"], state["learn_start"]
        if not hasattr(self.state, "mlr"):  # a checkpoint from before the field
            self.state.mlr = []
        self.prior_s = dict(getattr(self.state, "elapsed_s", None) or {})
        # the scorer's memory of this run's env: the incremental E's previous frame and error map, frame_diff's
        # previous frame, random's stream
        self.represent.restore(self.key, state.get("represent"))
        return True
