"""Lock-step evaluation of a policy on eval-mode envs (SPEC §10): one episode per env, epsilon-greedy.

The n eval envs (distinct seeds, see `eval_seeds`) play one episode each, all at once. Every lock-step
iteration:

1. the newest frames of the still-running envs, ``[B, H, W, 3]`` uint8, go through ``represent`` in ONE
   batched call, giving per-frame representations ``[B, *rep_shape]`` (numpy array or torch tensor);
2. each running env's stack of its ``stack`` newest representations, oldest first, is updated; before the
   episode's first frame the stack holds exact zeros (as the env's own stack after a reset, [0, 0, 0, first]);
   each representation is computed once, when its frame arrives, and never recomputed (SPEC §7);
3. ONE batched call ``act(stacks [B, stack, *rep_shape])`` gives the greedy actions ``[B]``;
4. with probability epsilon an env takes a uniform random action instead (drawn from the eval Generator);
5. every running env steps; an env whose episode ended (terminated or truncated) stops, its return recorded.

Stacks stay in the library (and, for torch, on the device and in the dtype) that ``represent`` returns.
Running envs keep their order: the batch rows follow the env order with the finished envs left out.

An evaluation can outlive its process: given ``save``, it hands over a snapshot (`EVAL_STATE_KEYS`: the
counters, the stacks, the eval Generator, each running env's ``get_state()`` and the scorer's memory of its
stream) every ``save_every_s`` wall seconds, and ``evaluate(..., resume=snapshot)`` on fresh envs built with the
same seeds continues it exactly: the same returns as one uninterrupted evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from spirl.common.seeding import derive_seed
from spirl.envs.atari import AtariEnv, make_env
from spirl.params import AtariParams
from spirl.training.representation import Representation, Reps, checked_representation

EVAL_STATE_KEYS = ("n_envs", "steps", "returns", "lengths", "finished", "running", "stacks", "rng", "envs", "memory",
                   "seconds")


class EnvLike(Protocol):
    """What `evaluate` needs from an env (``spirl.envs.atari.AtariEnv`` in eval mode has it)."""

    n_actions: int

    @property
    def frame(self) -> np.ndarray:
        """Newest frame, ``[H, W, 3]`` uint8."""
        ...

    def reset(self) -> tuple[Any, dict]:
        """Start an episode; returns (obs, info)."""
        ...

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        """One agent step; returns (obs, reward, terminated, truncated, info)."""
        ...


@dataclass
class EvalResult:
    """Outcome of one evaluation, per env in env order.

    Attributes:
        returns: [n_envs] sum of the raw rewards of each episode (partial sum for an unfinished one).
        lengths: [n_envs] agent steps taken in each episode.
        finished: [n_envs] whether the episode ended (terminated or truncated) before `max_steps`.
        steps: lock-step iterations run (= max(lengths)).
        seconds: wall time of the evaluation.
    """

    returns: list[float]
    lengths: list[int]
    finished: list[bool]
    steps: int
    seconds: float


def eval_seeds(base_seed: int, n_envs: int) -> list[int]:
    """Distinct, stable seeds of the eval envs: ``derive_seed(base_seed, "eval", i)``.

    Args:
        base_seed: non-negative run seed.
        n_envs: number of eval envs, >= 1.
    Returns:
        [n_envs] seeds in [0, 2**63), pairwise distinct.
    """
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    seeds = [derive_seed(base_seed, "eval", i) for i in range(n_envs)]
    if len(set(seeds)) != n_envs:
        raise RuntimeError(f"eval seeds collide for base seed {base_seed}")
    return seeds


def make_eval_envs(game: str, base_seed: int, n_envs: int, atari: AtariParams) -> list[AtariEnv]:
    """Eval-mode Atari envs (game over ends an episode, raw score), one per seed of `eval_seeds`.

    Args:
        game: game name, e.g. "Frostbite".
        base_seed: non-negative run seed.
        n_envs: number of envs, >= 1.
        atari: the validated `atari` parameters.
    Returns:
        [n_envs] envs, not yet reset.
    """
    return [make_env(game, seed, "eval", atari) for seed in eval_seeds(base_seed, n_envs)]


def summarize(returns: Sequence[float]) -> dict[str, float | int]:
    """Summary statistics of per-episode returns.

    Args:
        returns: [n] episode returns, n >= 1.
    Returns:
        dict with "mean", "median", "std" (population, ddof=0), "min", "max" (floats) and "n" (int).
    """
    values = np.asarray(returns, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"returns must be a non-empty 1-D sequence, got shape {values.shape}")
    return {"mean": float(values.mean()), "median": float(np.median(values)), "std": float(values.std(ddof=0)),
            "min": float(values.min()), "max": float(values.max()), "n": int(values.size)}


def epsilon_greedy(greedy: np.ndarray, n_actions: int, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Replace each greedy action by a uniform random one with probability epsilon.

    Draws, in this order: ``rng.random(B)``, then ``rng.integers(n_actions, size=B)``.

    Args:
        greedy: [B] int greedy actions.
        n_actions: size of the action set.
        epsilon: exploration probability in [0, 1].
        rng: the eval Generator.
    Returns:
        [B] int64 actions.
    """
    explore = rng.random(greedy.shape[0]) < epsilon
    random_actions = rng.integers(n_actions, size=greedy.shape[0])
    return np.where(explore, random_actions, greedy).astype(np.int64)


def _check_reps(reps: Any, batch: int) -> Reps:
    """Check that `represent` returned a numpy array or torch tensor with one row per frame.

    Args:
        reps: output of `represent` for `batch` frames.
        batch: number of frames B.
    Returns:
        reps unchanged, [B, *rep_shape].
    """
    if not isinstance(reps, np.ndarray | torch.Tensor):
        raise TypeError(f"represent must return a numpy array or torch tensor, got {type(reps).__name__}")
    if reps.ndim < 1 or reps.shape[0] != batch:
        raise ValueError(f"represent returned shape {tuple(reps.shape)} for {batch} frames")
    return reps


def push_representations(stacks: Reps | None, reps: Reps, stack: int) -> Reps:
    """Append the newest representations to the stacks, dropping the oldest (a fresh array/tensor).

    Args:
        stacks: [B, stack, *rep_shape] current stacks, oldest first, or None before the first frame
            (then the stacks start as exact zeros, in the dtype/device of `reps`).
        reps: [B, *rep_shape] newest representations (numpy array or torch tensor).
        stack: number of representations per stack, >= 1.
    Returns:
        [B, stack, *rep_shape] new stacks, same library as `reps`.
    """
    if isinstance(reps, torch.Tensor):
        if stacks is None:
            stacks = reps.new_zeros((reps.shape[0], stack, *reps.shape[1:]))
        return torch.cat([stacks[:, 1:], reps.unsqueeze(1).to(stacks.dtype)], dim=1)
    if stacks is None:
        stacks = np.zeros((reps.shape[0], stack, *reps.shape[1:]), dtype=reps.dtype)
    return np.concatenate([stacks[:, 1:], reps[:, None].astype(stacks.dtype, copy=False)], axis=1)


def _keep_rows(stacks: Reps, keep: np.ndarray) -> Reps:
    """Rows of `stacks` where `keep` is True (torch: the mask moved to the stacks' device).

    Args:
        stacks: [B, stack, *rep_shape].
        keep: [B] bool.
    Returns:
        [B', stack, *rep_shape], B' = keep.sum().
    """
    if isinstance(stacks, torch.Tensor):
        return stacks[torch.as_tensor(keep, device=stacks.device)]
    return stacks[keep]


def _greedy_actions(actions: Any, batch: int, n_actions: int) -> np.ndarray:
    """Check the output of `act` and return it as a numpy int64 vector.

    Args:
        actions: [B] ints from `act` (numpy; a torch tensor is moved to the CPU).
        batch: B.
        n_actions: size of the action set.
    Returns:
        [B] int64.
    """
    if isinstance(actions, torch.Tensor):
        actions = actions.detach().cpu().numpy()
    actions = np.asarray(actions)
    if actions.shape != (batch,) or not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"act must return [{batch}] ints, got shape {actions.shape} dtype {actions.dtype}")
    if batch and (actions.min() < 0 or actions.max() >= n_actions):
        raise ValueError(f"act returned actions outside [0, {n_actions})")
    return actions.astype(np.int64, copy=False)


def _check_args(envs: Sequence[EnvLike], stack: int, epsilon: float, max_steps: int | None) -> int:
    """Validate the arguments of `evaluate`.

    Args:
        envs, stack, epsilon, max_steps: as in `evaluate`.
    Returns:
        the common n_actions of the envs.
    """
    if len(envs) == 0:
        raise ValueError("evaluate needs at least one env")
    if stack < 1:
        raise ValueError(f"stack must be >= 1, got {stack}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    if max_steps is not None and max_steps < 0:
        raise ValueError(f"max_steps must be >= 0 or None, got {max_steps}")
    n_actions = {int(env.n_actions) for env in envs}
    if len(n_actions) != 1:
        raise ValueError(f"all envs must have the same number of actions, got {sorted(n_actions)}")
    return n_actions.pop()


def _step_running(envs: Sequence[EnvLike], running: np.ndarray, actions: np.ndarray,
                  returns: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Step every running env once, adding its reward and counting the step.

    Args:
        envs: all envs.
        running: [B] indices of the running envs.
        actions: [B] actions, row b for env running[b].
        returns: [n_envs] float64 running sums, updated in place.
        lengths: [n_envs] int64 step counts, updated in place.
    Returns:
        [B] bool, True where the episode ended (terminated or truncated).
    """
    done = np.zeros(running.shape[0], dtype=bool)
    for b, (i, action) in enumerate(zip(running.tolist(), actions.tolist(), strict=True)):
        _, reward, terminated, truncated, _ = envs[i].step(action)
        returns[i] += float(reward)
        lengths[i] += 1
        done[b] = bool(terminated or truncated)
    return done


def evaluate(envs: Sequence[EnvLike], represent: Representation, act: Callable[[Any], np.ndarray],
             stack: int, epsilon: float, rng: np.random.Generator, max_steps: int | None = None,
             on_step: Callable[[int], None] | None = None, streams: Sequence[Hashable] | None = None,
             save: Callable[[dict], None] | None = None, save_every_s: float = 600.0, resume: dict | None = None
             ) -> EvalResult:
    """Play one episode per env in lock-step with epsilon-greedy actions (see module doc).

    Args:
        envs: [n_envs] envs with equal n_actions; each is reset here (unless resuming).
        represent: frames [B, H, W, 3] uint8 -> representations [B, *rep_shape] (numpy or torch); a
            `Representation` (a function of the frames alone: wrapped in `StatelessRepresentation`).
        act: stacks [B, stack, *rep_shape] (the library of `represent`) -> greedy actions [B] int.
        stack: representations per stack (4).
        epsilon: probability of a uniform random action (0.001).
        rng: eval Generator, the only source of randomness here.
        max_steps: optional cap on lock-step iterations (None: none); envs still running then are unfinished.
        on_step: optional callback, called after each iteration with the number of iterations done.
        streams: optional [n_envs] stream keys; if given, `represent` is called as represent(frames, streams of
            the running envs, episode-start flags) (saliency.incremental: the first frame of each env is computed in
            full, later ones only where they changed).
        save: optional callback given a snapshot of the evaluation (a dict of `EVAL_STATE_KEYS`; envs need
            get_state, and with `streams` it carries represent.state(stream) of each running env), after the
            iteration at which `save_every_s` wall seconds have passed since the last one (0: every iteration).
        save_every_s: wall seconds between snapshots, >= 0.
        resume: a snapshot from `save`: continue that evaluation (envs built with the same seeds, not reset; the
            envs' states, the Generator's and, through represent.restore(stream, memory), the scorer's memory are
            restored from it) instead of starting one.
    Returns:
        EvalResult with per-env raw returns, lengths and finished flags, in env order.
    """
    n_actions = _check_args(envs, stack, epsilon, max_steps)
    represent = checked_representation(represent)
    if save_every_s < 0:
        raise ValueError(f"save_every_s must be >= 0, got {save_every_s}")
    start = time.perf_counter()
    if resume is None:
        for env in envs:
            env.reset()
        returns = np.zeros(len(envs), dtype=np.float64)
        lengths = np.zeros(len(envs), dtype=np.int64)
        finished = np.zeros(len(envs), dtype=bool)
        running = np.arange(len(envs))
        stacks: Reps | None = None
        steps, prior_s = 0, 0.0
    else:
        returns, lengths, finished, running, stacks, steps, prior_s = _restore(resume, envs, represent, rng, streams)
    last_save = time.perf_counter()
    while running.size and (max_steps is None or steps < max_steps):
        frames = np.stack([envs[i].frame for i in running.tolist()])
        reps = represent(frames) if streams is None else \
            represent(frames, [streams[i] for i in running.tolist()], [steps == 0] * running.size)
        stacks = push_representations(stacks, _check_reps(reps, running.size), stack)
        greedy = _greedy_actions(act(stacks), running.size, n_actions)
        done = _step_running(envs, running, epsilon_greedy(greedy, n_actions, epsilon, rng), returns, lengths)
        if done.any():
            finished[running[done]] = True
            running, stacks = running[~done], _keep_rows(stacks, ~done)
        steps += 1
        if on_step is not None:
            on_step(steps)
        if save is not None and running.size and time.perf_counter() - last_save >= save_every_s:
            save({"n_envs": len(envs), "steps": steps, "returns": returns.copy(), "lengths": lengths.copy(),
                  "finished": finished.copy(), "running": running.copy(), "stacks": stacks, "rng":
                  rng.bit_generator.state, "envs": [envs[i].get_state() for i in running.tolist()],
                  "memory": _memory(represent, streams, running), "seconds": prior_s + time.perf_counter() - start})
            last_save = time.perf_counter()
    return EvalResult(returns=returns.tolist(), lengths=lengths.tolist(), finished=finished.tolist(),
                      steps=steps, seconds=prior_s + time.perf_counter() - start)


def _memory(represent: Representation, streams: Sequence[Hashable] | None, running: np.ndarray) -> list[Any] | None:
    """The representation's memory of each running env's stream, [B] in running order (None without streams)."""
    if streams is None:
        return None
    return [represent.state(streams[i]) for i in running.tolist()]


def _restore(snapshot: dict, envs: Sequence[EnvLike], represent: Representation, rng: np.random.Generator,
             streams: Sequence[Hashable] | None) -> tuple:
    """Put the envs, the Generator and the scorer's memory back as `snapshot` (from `evaluate`'s save) had them.

    Returns:
        (returns, lengths, finished, running, stacks, steps, seconds before this process) of the evaluation.
    Raises:
        ValueError: the snapshot lacks a key, is of an evaluation with another number of envs, or carries a memory
            that this evaluation cannot continue (no streams, or a representation that keeps none).
    """
    missing = [key for key in EVAL_STATE_KEYS if key not in snapshot]
    if missing:
        raise ValueError(f"evaluation snapshot lacks {', '.join(missing)}")
    if snapshot["n_envs"] != len(envs):
        raise ValueError(f"evaluation snapshot is of {snapshot['n_envs']} envs, this evaluation has {len(envs)}")
    running = np.asarray(snapshot["running"], dtype=np.int64)
    for i, state in zip(running.tolist(), snapshot["envs"], strict=True):
        envs[i].set_state(state)
    if snapshot["memory"] is not None:
        if streams is None:
            raise ValueError("evaluation snapshot carries a scorer's memory, but this evaluation has no streams")
        for i, memory in zip(running.tolist(), snapshot["memory"], strict=True):
            represent.restore(streams[i], memory)
    rng.bit_generator.state = snapshot["rng"]
    return (np.array(snapshot["returns"], dtype=np.float64), np.array(snapshot["lengths"], dtype=np.int64),
            np.array(snapshot["finished"], dtype=bool), running, snapshot["stacks"], int(snapshot["steps"]),
            float(snapshot["seconds"]))
