"""Collect random-policy frames of one game for MAE pre-training (SPEC §2); one job per game.

PYTHONHASHSEED=0 python src/collect_frames.py --params params.yaml conf/full.yaml --game Frostbite \
    --out-frames data/full/frames/Frostbite/frames.npz --out-run data/full/frames/Frostbite/run.json
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import write_json, write_npz
from spirl.common.runinfo import run_record
from spirl.common.seeding import derive_seed
from spirl.envs.atari import make_env
from spirl.envs.collect import collect_random_frames, summarize
from spirl.params import ConfigError, load_params, to_plain


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--game", required=True)
    parser.add_argument("--out-frames", type=Path, required=True)
    parser.add_argument("--out-run", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("collect", args.log)
    params = load_params(args.params)
    if args.game not in params.collect.frames_per_game:
        raise ConfigError(f"--game {args.game!r} has no collect.frames_per_game entry; allowed: "
                          + ", ".join(params.collect.frames_per_game))
    n_frames = params.collect.frames_per_game[args.game]
    seeds = {"env": derive_seed(params.collect.seed, "collect", args.game, "env"),
             "policy": derive_seed(params.collect.seed, "collect", args.game, "policy")}
    log.info("collecting %d random-policy frames of %s (seeds %s)", n_frames, args.game, seeds)

    start = time.perf_counter()
    env = make_env(args.game, seeds["env"], "train", params.atari)
    with tqdm(total=n_frames, desc=f"collect {args.game}", unit="step", mininterval=2.0) as bar:
        policy_rng = np.random.Generator(np.random.PCG64(seeds["policy"]))
        arrays = collect_random_frames(env, n_frames, policy_rng, params.collect.first_life_only,
                                       on_step=lambda: bar.update())
    env.close()
    collect_s = time.perf_counter() - start
    write_npz(args.out_frames, arrays, compresslevel=params.collect.compression_level)
    wall_s = time.perf_counter() - start
    summary = summarize(arrays)
    log.info("%s: %s; %.0f steps/s; wrote %s (%.1f MB)", args.game, summary, n_frames / collect_s,
             args.out_frames, args.out_frames.stat().st_size / 1e6)
    # run.json last: its presence marks a complete job.
    write_json(args.out_run, run_record(
        stage="collect",
        params={"atari": to_plain(params.atari), "collect": to_plain(params.collect)},
        wildcards={"game": args.game, "profile": params.experiment.profile},
        seeds=seeds,
        wall_time_s=wall_s,
        extra={"summary": summary, "env_steps_per_s": n_frames / collect_s, "n_actions": env.n_actions,
               "frames_file": str(args.out_frames), "frames_bytes": args.out_frames.stat().st_size},
    ))


if __name__ == "__main__":
    main()
