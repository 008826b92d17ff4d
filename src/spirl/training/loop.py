"""The one training loop (SPEC §8-§10): one env, PER replay, the Rainbow agent, evaluation points, resume.

The loop steps a group of runs in lock-step: one seed, or the seeds of one (variant, regime, game) that
runtime.seeds_per_job trains in one process (each with its own env, replay, generators and agent; their
networks updated together by spirl.agents.multiseed.StackedAgents).

Each new frame is turned into its per-frame representation once, when it arrives (SPIRL: error map,
selection and embedding; DE-Rainbow: the gray 84x84 frame); the replay stores those, never recomputed.
One run, its state and its checkpoints are `spirl.training.run.TrainingRun`; this module steps and saves a group.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from spirl.agents.agent import Agent
from spirl.agents.multiseed import StackedAgents
from spirl.training.representation import Representation
from spirl.training.run import Stopwatch, TrainingRun


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


def _observe_all(runs: Sequence[TrainingRun], represent: Representation, clock: Stopwatch) -> None:
    """Represent every run's current frame in one batch and push it onto its stack (each run is a stream; a run
    whose stack was dropped starts an episode)."""
    with clock("represent"):
        reps = represent(np.stack([run.env.frame for run in runs]), [run.key for run in runs],
                         [run.state.stack is None for run in runs])
    for run, rep in zip(runs, reps, strict=True):
        run.observe(rep)


def step_group(runs: Sequence[TrainingRun], learner: Learner, represent: Representation, clock: Stopwatch
               ) -> None:
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
        for _ in range(runs[0].params.train.updates_per_learn):  # MLR: 2 updates per env step
            with clock("replay"):
                batches = [run.replay.sample(run.params.train.batch_size, run.beta(), window=run.window)
                           for run in runs]
                indices = [batch.pop("indices") for batch in batches]
            with clock("learn"):
                losses, priorities = learner.learn(batches)
            with clock("replay"):
                for run, idx, loss, prio in zip(runs, indices, losses, priorities, strict=True):
                    run.replay.update_priorities(idx, prio)
                    run.state.losses.append(loss)
                    run.record_auxiliary()


def _step_alone(run: TrainingRun) -> None:
    """One step of `run` alone (a group of one, with its own Agent): act, store, learn when due."""
    step_group([run], SingleLearner(run.agent), run.represent, run.clock)


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
            _step_alone(run)
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

