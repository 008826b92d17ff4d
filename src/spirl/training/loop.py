"""The one training loop (SPEC §8-§10): one env, PER replay, the Rainbow agent, evaluation points, resume.

The loop steps a group of runs in lock-step: one seed, or the seeds of one (variant, regime, game) that
runtime.seeds_per_job trains in one process (each with its own env, replay, generators and agent; their
networks updated together by spirl.agents.multiseed.StackedAgents).

Each new frame is turned into its per-frame representation once, when it arrives (SPIRL: error map,
selection and embedding; DE-Rainbow: the gray 84x84 frame); the replay stores those, never recomputed.
Everything random is a named stream derived from (seed, game, variant, regime), and the whole state is
checkpointed, so a killed run resumes exactly.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from spirl.agents.agent import Agent, FrameSpec, build_qnetwork
from spirl.agents.multiseed import StackedAgents
from spirl.agents.rainbow import per_beta
from spirl.agents.replay import PrioritizedReplay
from spirl.agents.represent import Represent
from spirl.common.io import atomic_path
from spirl.common.seeding import derive_seed
from spirl.envs.atari import AtariEnv, make_env
from spirl.params import Params, RegimeParams
from spirl.training.evaluation import eval_seeds, evaluate

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
    eval_progress: dict | None = None  # the evaluation under way at env_step (evaluation's snapshot, with
    #                                    its "env_step"), so a crash during a long evaluation loses little of it


class TrainingRun:
    """One (variant, regime, game, seed) run of SPEC §8-§10 on `params` (the variant's resolved params)."""

    def __init__(self, key: RunKey, params: Params, spec: FrameSpec, represent: Represent, device: torch.device,
                 prefill: dict[str, np.ndarray] | None = None, env_factory: EnvFactory | None = None) -> None:
        self.key, self.params, self.spec, self.represent, self.device = key, params, spec, represent, device
        self.regime: RegimeParams = params.train.regimes[key.regime]
        self.env_factory = env_factory or (lambda seed, mode: make_env(key.game, seed, mode, params.atari))
        self.env: AtariEnv = self.env_factory(key.stream("env"), "train")
        self.rng = np.random.Generator(np.random.PCG64(key.stream("actions")))
        self.replay_rng = np.random.Generator(np.random.PCG64(key.stream("replay")))  # PER sampling draws
        net = build_qnetwork(spec, params.agent, self.env.n_actions, params.atari.frame_stack,
                             torch.Generator().manual_seed(key.stream("init")))
        self.agent = Agent(net, params.agent, params.train, device, torch.Generator().manual_seed(key.stream("noise")),
                           compile=params.runtime.compile_learner)  # used by a group of one (StackedAgents: eager)
        self.replay = PrioritizedReplay(
            self.regime.replay_capacity_transitions, spec.shape, spec.dtype, params.atari.frame_stack,
            params.train.multi_step, params.train.discount, params.replay.priority_exponent,
            params.replay.new_priority, params.replay.is_weight_norm, self.replay_rng)
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

    def env_step(self) -> None:
        """One step of this run alone (a group of one): act, store, learn when due."""
        step_group([self], SingleLearner(self.agent), self.represent, self.clock)

    def _log_episode(self) -> None:
        s = self.state
        s.progress.append({"env_step": s.env_step, "episode": s.episode, "return_raw": s.episode_raw,
                           "return_clipped": s.episode_clipped, "length": s.episode_length,
                           "loss_mean": float(np.mean(s.losses)) if s.losses else float("nan"),
                           "updates": self.agent.updates})
        s.episode, s.episode_raw, s.episode_clipped, s.episode_length, s.losses = s.episode + 1, 0.0, 0.0, 0, []

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
        forget = getattr(self.represent, "forget", None)
        if forget is not None:  # the evaluation envs are gone: drop the scorer's memory of them
            forget(streams)
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
        memory = getattr(self.represent, "state", None)  # a Represent's scorer memory (a test's lambda has none)
        # the replay's filled rows as tensors sharing its memory: torch.save streams them without a copy (a numpy
        # array would be pickled through a full in-memory copy: 2x a 400K buffer's gigabytes at every checkpoint)
        replay = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                  for k, v in self.replay.state_dict(copy=False).items()}
        state = {"key": self.key, "agent": self.agent.state_dict(), "replay": replay,
                 "represent": memory(self.key) if memory is not None else None,
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
        self.prior_s = dict(getattr(self.state, "elapsed_s", None) or {})
        restore = getattr(self.represent, "restore", None)
        if restore is not None:  # the scorer's memory of this run's env: the previous frame and error map of the
            restore(self.key, state.get("represent"))  # incremental E, frame_diff's previous frame, random's stream
        return True


class Learner(Protocol):
    """The agents of a group of runs, seen as one: act on [S, B, ...] stacks, learn from S batches at once."""

    def act(self, stacks: np.ndarray) -> np.ndarray:
        """Greedy noisy actions [S, B] for stacks [S, B, F, *frame shape]."""

    def learn(self, batches: Sequence[dict[str, np.ndarray]]) -> tuple[list[float], list[np.ndarray]]:
        """One update of every seed on its own batch; returns per-seed losses and new priorities [B]."""

    def sync(self) -> None:
        """Bring each run's own Agent up to date (before an evaluation, a checkpoint or the outputs)."""


class SingleLearner:
    """A group of one seed: its Agent, unchanged."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def act(self, stacks: np.ndarray) -> np.ndarray:
        return self.agent.act(torch.from_numpy(stacks[0]))[None]

    def learn(self, batches: Sequence[dict[str, np.ndarray]]) -> tuple[list[float], list[np.ndarray]]:
        (batch,) = batches
        loss, priorities = self.agent.learn(batch)
        return [loss], [priorities]

    def sync(self) -> None:
        pass


def _observe_all(runs: Sequence[TrainingRun], represent: Represent, clock: Stopwatch) -> None:
    """Represent every run's current frame in one batch and push it onto its stack (each run is a stream; a run
    whose stack was dropped starts an episode)."""
    with clock("represent"):
        reps = represent(np.stack([run.env.frame for run in runs]), [run.key for run in runs],
                         [run.state.stack is None for run in runs])
    for run, rep in zip(runs, reps, strict=True):
        run.observe(rep)


def step_group(runs: Sequence[TrainingRun], learner: Learner, represent: Represent, clock: Stopwatch) -> None:
    """One environment step of every run of a lock-stepped group: act, store, see the new frame, learn when due.

    The runs share a variant, regime and game (so one `represent`) and their env step; each keeps its own env,
    replay, action RNG and agent. Frames of all runs are represented in one batch, actions chosen in one batch.
    """
    fresh = [run for run in runs if run.state.stack is None]
    if fresh:  # the first step: reset the envs and see their first frames
        for run in fresh:
            with clock("env"):
                run.env.reset()
        _observe_all(fresh, represent, clock)
    random = [run.random_action() for run in runs]
    if random[0] is None:
        with clock("act"):
            actions = learner.act(np.stack([run.state.stack for run in runs])[:, None])[:, 0]
    else:
        actions = random
    for run, action in zip(runs, actions, strict=True):
        run.advance(int(action))
    _observe_all(runs, represent, clock)
    if runs[0].learn_due():
        with clock("replay"):
            batches = [run.replay.sample(run.params.train.batch_size, run.beta()) for run in runs]
            indices = [batch.pop("indices") for batch in batches]
        with clock("learn"):
            losses, priorities = learner.learn(batches)
        with clock("replay"):
            for run, idx, loss, prio in zip(runs, indices, losses, priorities, strict=True):
                run.replay.update_priorities(idx, prio)
                run.state.losses.append(loss)


def _checked_group(runs: Sequence[TrainingRun]) -> None:
    if not runs:
        raise ValueError("a training group needs at least one run")
    first = runs[0]
    for run in runs[1:]:
        same = (run.key.variant, run.key.regime, run.key.game) == (first.key.variant, first.key.regime, first.key.game)
        if not same or run.learn_start != first.learn_start or run.online_steps != first.online_steps:
            raise ValueError(f"runs {first.key} and {run.key} cannot train together: a group shares variant, "
                             "regime, game and schedule")
    if len({run.key.seed for run in runs}) != len(runs):
        raise ValueError(f"a group's seeds must differ, got {[run.key.seed for run in runs]}")


def _evaluate_if_pending(run: TrainingRun, log: Callable[[str], None], save: Callable[[], None] | None) -> None:
    """Evaluate `run` if due and not yet done at its step; with `save`, its progress is checkpointed meanwhile and
    the finished point too."""
    if run.eval_pending():
        with run.clock("eval"):
            point = run.evaluate(save)
        log(f"{run.key}: eval at {point['env_step']}: mean return {np.mean(point['returns']):.1f}")
        if save is not None:
            save()


def _save(run: TrainingRun, path: Path) -> None:
    """Write `run`'s checkpoint (during or after an evaluation, counted as checkpoint time)."""
    with run.clock("checkpoint"):
        run.save(path)


def run_training(runs: Sequence[TrainingRun], checkpoints: Sequence[Path] | None, checkpoint_every: int,
                 on_step: Callable[[], None] | None = None, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train a group of seeds in lock-step to the regime's end, with evaluations and checkpoints (one per run).

    One seed trains with its own Agent; several with agents.multiseed.StackedAgents (stacked parameters, one vmapped
    update for all seeds). After a resume whose checkpoints stand at different env steps (a crash between
    two of the group's checkpoint writes), the runs that lag catch up alone first.
    Returns: wall seconds of this process by part (env, represent, act, replay, learn, eval, checkpoint).
    """
    _checked_group(runs)
    if checkpoints is not None and len(checkpoints) != len(runs):
        raise ValueError(f"{len(runs)} runs need {len(runs)} checkpoint paths, got {len(checkpoints)}")
    clock = runs[0].clock
    for run in runs:
        run.clock = clock
    lead = max(run.state.env_step for run in runs)
    for run in runs:  # catch-up after an uneven resume: each lagging run alone, as a group of one
        while run.state.env_step < lead:
            run.env_step()
            _evaluate_if_pending(run, log, None)
    savers = [None] * len(runs) if checkpoints is None else \
        [functools.partial(_save, run, path) for run, path in zip(runs, checkpoints, strict=True)]
    for run, save in zip(runs, savers, strict=True):  # an evaluation that a crash interrupted, or never began
        _evaluate_if_pending(run, log, save)
    agents = [run.agent for run in runs]
    learner = SingleLearner(agents[0]) if len(runs) == 1 else StackedAgents(agents)
    while not runs[0].done():
        step_group(runs, learner, runs[0].represent, clock)
        due = runs[0].eval_due()
        save = checkpoints is not None and (runs[0].state.env_step % checkpoint_every == 0 or runs[0].done() or due)
        if save or due:
            learner.sync()  # the runs' own agents evaluate and are saved
        if save:  # before an evaluation too: a crash during it resumes here, not a checkpoint interval back
            with clock("checkpoint"):
                for run, path in zip(runs, checkpoints, strict=True):
                    run.save(path)
        for run, saver in zip(runs, savers, strict=True):
            _evaluate_if_pending(run, log, saver)
        if on_step is not None:
            on_step()
    learner.sync()
    return dict(clock.seconds)

