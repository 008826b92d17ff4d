"""Random-policy frames for MAE pre-training (SPEC §2), stored with their transitions.

The arrays hold one row per agent step t (the transition t -> t+1):
  frames[t]           uint8 [H, W, 3]  the newest frame when the action was chosen (the stack's last)
  actions[t]          int16            index into the game's minimal action set, uniform at random
  rewards_clipped[t]  int8             sign of the summed raw rewards (train mode)
  rewards_raw[t]      float32          summed raw game reward of the 4 repeats
  terminals[t]        bool             the episode ended after this step (life loss, game over or cap)
  truncated[t]        bool             ... because of the 27,000-step cap
  episodes[t]         int32            episode id, 0, 1, ... (a new one starts after every terminal)
DE-Rainbow-P pre-fills its replay with exactly these transitions (SPEC §9.5); the MAE uses `frames`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from spirl.envs.atari import AtariEnv

ARRAY_DTYPES = {
    "frames": np.uint8,
    "actions": np.int16,
    "rewards_clipped": np.int8,
    "rewards_raw": np.float32,
    "terminals": np.bool_,
    "truncated": np.bool_,
    "episodes": np.int32,
}


def collect_random_frames(
    env: AtariEnv,
    n_frames: int,
    policy_rng: np.random.Generator,
    first_life_only: bool,
    on_step: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Run a uniform random policy in a train-mode env for `n_frames` agent steps.

    Args:
        env: a train-mode AtariEnv (terminal on life loss), not yet reset.
        n_frames: number of transitions (= frames) to record.
        policy_rng: the Generator the actions are drawn from.
        first_life_only: released-code quirk: after a life loss, hard-reset the game instead of
            continuing it, so every frame comes from a first life.
        on_step: called once per step (progress bar).
    Returns:
        the arrays of the module docstring, each of length n_frames.
    """
    env.reset()
    size = env.frame.shape  # [H, W, 3]
    out = {name: np.zeros((n_frames, *size) if name == "frames" else n_frames, dtype=dtype)
           for name, dtype in ARRAY_DTYPES.items()}
    episode = 0
    for t in range(n_frames):
        out["frames"][t] = env.frame
        action = int(policy_rng.integers(env.n_actions))
        _, reward, terminated, truncated, info = env.step(action)
        out["actions"][t] = action
        out["rewards_clipped"][t] = int(reward)
        out["rewards_raw"][t] = info["raw_reward"]
        out["terminals"][t] = terminated or truncated
        out["truncated"][t] = truncated
        out["episodes"][t] = episode
        if terminated or truncated:
            episode += 1
            env.reset(hard=first_life_only)
        if on_step is not None:
            on_step()
    return out


def summarize(arrays: dict[str, np.ndarray]) -> dict[str, float | int | None]:
    """Counts for run.json: episodes, truncations, and the mean return and length of completed episodes."""
    ends = np.flatnonzero(arrays["terminals"])
    returns = np.bincount(arrays["episodes"], weights=arrays["rewards_raw"])[: len(ends)]
    lengths = np.diff(ends, prepend=-1)
    return {
        "n_frames": int(len(arrays["terminals"])),
        "n_episodes_completed": int(len(ends)),
        "n_truncated": int(arrays["truncated"].sum()),
        "mean_completed_episode_raw_return": float(returns.mean()) if len(ends) else None,
        "mean_completed_episode_length": float(lengths.mean()) if len(ends) else None,
    }
