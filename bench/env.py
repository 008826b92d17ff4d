"""Benchmark: agent steps/s of spirl.envs.atari.AtariEnv vs the bare emulator, per game.

The wrapper runs in train mode with the `atari` section of params.yaml (the paper's
settings) and uniform random actions,
resetting on terminated/truncated. The bare emulator is a raw ALEInterface with the
same settings doing 4 x act per agent step (random action, no screen grab) and
reset_game at game over. For reference, a "floor" loop does on a raw ALE only the
work the frame rule requires (4 x act, 2 screen grabs, max, resize, stack copy) with
no wrapper logic: floor/bare bounds what any wrapper following the rule can reach.
The loops alternate in blocks so that machine noise hits them alike; the target is
wrapper/bare >= 0.80.

    python bench/env.py --params params.yaml --steps 5000 --out bench/results/env.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ale_py
import cv2
import numpy as np

from spirl.common.runinfo import emit_bench
from spirl.envs.ale import derive_seeds, make_ale, rom_id
from spirl.envs.atari import AtariEnv, make_env
from spirl.params import AtariParams, load_params, to_plain

MIN_RATIO = 0.80
BLOCK_STEPS = 500


def time_wrapper(env: AtariEnv, rng: np.random.Generator, steps: int) -> tuple[float, int]:
    """Run `steps` random agent steps of the wrapper; returns (seconds, episodes ended)."""
    ended = 0
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.n_actions)))
        if terminated or truncated:
            env.reset()
            ended += 1
    return time.perf_counter() - start, ended


def time_bare(ale: ale_py.ALEInterface, action_ids: list[int], rng: np.random.Generator,
              steps: int, frame_skip: int) -> tuple[float, int]:
    """Run `steps` random agent steps of the raw ALE; returns (seconds, games ended)."""
    ended = 0
    n_actions = len(action_ids)
    start = time.perf_counter()
    for _ in range(steps):
        action = action_ids[int(rng.integers(n_actions))]
        for _ in range(frame_skip):
            ale.act(action)
        if ale.game_over():
            ale.reset_game()
            ended += 1
    return time.perf_counter() - start, ended


def time_floor(ale: ale_py.ALEInterface, action_ids: list[int], rng: np.random.Generator,
               steps: int, atari: AtariParams) -> float:
    """Run `steps` agent steps doing only the frame rule's work inline; returns seconds."""
    size, skip = atari.frame_size_px, atari.frame_skip
    second_last, last = np.zeros((2, 210, 160, 3), np.uint8)
    ring = np.zeros((atari.frame_stack, size, size, 3), np.uint8)
    n_actions = len(action_ids)
    start = time.perf_counter()
    for t in range(steps):
        action = action_ids[int(rng.integers(n_actions))]
        for _ in range(skip - 1):
            ale.act(action)
        ale.getScreenRGB(second_last)
        ale.act(action)
        ale.getScreenRGB(last)
        newest = t % len(ring)
        cv2.resize(np.maximum(second_last, last, out=second_last), (size, size),
                   dst=ring[newest], interpolation=cv2.INTER_LINEAR)
        np.concatenate((ring[newest + 1:], ring[:newest + 1]))
        if ale.game_over():
            ale.reset_game()
    return time.perf_counter() - start


def bench_game(game: str, steps: int, seed: int, atari: AtariParams) -> dict:
    """Alternate bare, floor and wrapper blocks of BLOCK_STEPS until each ran `steps` steps."""
    env = make_env(game, seed, "train", atari)
    env.reset()
    ale, floor_ale = (make_ale(rom_id(game), derive_seeds(seed)[0]) for _ in range(2))
    action_ids = [a.value for a in ale.getMinimalActionSet()]
    wrapper_rng, bare_rng, floor_rng = (np.random.default_rng(seed) for _ in range(3))
    totals = {"wrapper_s": 0.0, "bare_s": 0.0, "floor_s": 0.0, "wrapper_episodes": 0, "bare_games": 0}
    done = 0
    while done < steps:
        block = min(BLOCK_STEPS, steps - done)
        seconds, ended = time_bare(ale, action_ids, bare_rng, block, atari.frame_skip)
        totals["bare_s"] += seconds
        totals["bare_games"] += ended
        totals["floor_s"] += time_floor(floor_ale, action_ids, floor_rng, block, atari)
        seconds, ended = time_wrapper(env, wrapper_rng, block)
        totals["wrapper_s"] += seconds
        totals["wrapper_episodes"] += ended
        done += block
    env.close()
    wrapper_rate, bare_rate = steps / totals["wrapper_s"], steps / totals["bare_s"]
    floor_rate = steps / totals["floor_s"]
    return {"steps": steps, "wrapper_steps_per_s": round(wrapper_rate, 1),
            "bare_steps_per_s": round(bare_rate, 1), "ratio": round(wrapper_rate / bare_rate, 4),
            "meets_min_ratio": wrapper_rate / bare_rate >= MIN_RATIO,
            "floor_steps_per_s": round(floor_rate, 1),
            "floor_ratio": round(floor_rate / bare_rate, 4),
            "wrapper_vs_floor": round(wrapper_rate / floor_rate, 4),
            "wrapper_episodes_ended": totals["wrapper_episodes"],
            "bare_games_ended": totals["bare_games"]}


def main(argv: list[str] | None = None) -> int:
    """Parse the CLI, benchmark each game, print one JSON line and optionally write it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", type=Path, default=[Path("params.yaml")],
                        help="parameter files (the atari section and the games are read)")
    parser.add_argument("--games", nargs="+", default=None, help="default: experiment.games")
    parser.add_argument("--steps", type=int, default=5000, help="agent steps per game and loop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    games = args.games or list(params.experiment.games)
    results = {game: bench_game(game, args.steps, args.seed, params.atari) for game in games}
    emit_bench({"bench": "env", "results": results,
                "settings": {"mode": "train", **to_plain(params.atari), "seed": args.seed,
                             "block_steps": BLOCK_STEPS, "min_ratio": MIN_RATIO}}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
