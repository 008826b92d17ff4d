"""Train and evaluate (variant, regime, game) runs of one or more seeds (SPEC §7-§10); resumes from the work folders.

PYTHONHASHSEED=0 python src/train_agent.py --params params.yaml conf/full.yaml --variant spirl --regime 100k \
    --game Seaquest --seed 0 [--in-model MAE --in-mr MR.json [--in-wu WU.npz]] [--in-frames FRAMES.npz] \
    --out-eval .../eval.json --out-progress .../progress.csv --out-run .../run.json --out-weights .../weights.npz \
    --work work/full/runs/spirl/100k/Seaquest/0
Several seeds (runtime.seeds_per_job): `--seed 0 1 2` with one --out-* path and one --work folder per seed, in the
same order; they train together in one process (spirl.agents.multiseed) and each gets the files of a single-seed job.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spirl.agents.represent import representation_for_run
from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import read_json, write_json, write_npz
from spirl.common.nn import parameter_count
from spirl.common.plots import write_csv
from spirl.common.runinfo import run_record
from spirl.common.runtime import setup_torch
from spirl.params import ConfigError, load_params, resolve_variant, to_plain
from spirl.saliency.pretrain import load_model
from spirl.training.loop import run_training
from spirl.training.metrics import final_metric
from spirl.training.run import RunKey, TrainingRun

OUTPUTS = ("eval", "progress", "run", "weights")


def parse_args():
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--regime", required=True)
    parser.add_argument("--game", required=True)
    parser.add_argument("--seed", type=int, nargs="+", required=True)
    for name in ("model", "mr", "wu", "frames"):
        parser.add_argument(f"--in-{name}", type=Path, default=None)
    for name in OUTPUTS:
        parser.add_argument(f"--out-{name}", type=Path, nargs="+", required=True)
    parser.add_argument("--work", type=Path, nargs="+", required=True,
                        help="scratch folder for each seed's resume checkpoint")
    args = parser.parse_args()
    for name in (*(f"out_{o}" for o in OUTPUTS), "work"):
        if len(getattr(args, name)) != len(args.seed):
            parser.error(f"--{name.replace('_', '-')} needs one path per seed ({len(args.seed)}), "
                         f"got {len(getattr(args, name))}")
    if len(set(args.seed)) != len(args.seed):
        parser.error(f"--seed values must differ, got {args.seed}")
    return args


def total_time(run: TrainingRun, resumed: bool, wall_s: float, timing: dict[str, float], group_size: int) -> dict:
    """The run's wall time over every process that trained it (a resumed run: the ones before too), by part, and
    its process CPU seconds (this process's, and over every process when the checkpoint recorded them).

    Adds this process's wall_s and timing to what the resumed checkpoint recorded of the earlier processes (up to
    that checkpoint). wall_time_total_s is this seed's share of the group's wall time, like wall_time_s. A run
    resumed from a checkpoint written before elapsed time was recorded has no total (None).
    """
    cpu_s = time.process_time() - run.cpu_started
    if resumed and not run.prior_s:
        return {"wall_time_total_s": None, "timing_total_s": None, "cpu_time_s": cpu_s / group_size,
                "cpu_time_total_s": None}
    prior = dict(run.prior_s)
    wall = prior.pop("wall", 0.0) + wall_s
    cpu = None if resumed and "cpu" not in prior else prior.pop("cpu", 0.0) + cpu_s
    parts = {k: prior.get(k, 0.0) + timing.get(k, 0.0) for k in dict.fromkeys([*prior, *timing])}
    return {"wall_time_total_s": wall / group_size, "timing_total_s": parts, "cpu_time_s": cpu_s / group_size,
            "cpu_time_total_s": None if cpu is None else cpu / group_size}


def main() -> None:
    args = parse_args()
    log = setup_logging("train_agent", args.log)
    params = resolve_variant(load_params(args.params), args.variant)
    base = params.experiment.variants[args.variant].base
    device = setup_torch(params.runtime)
    mae, mr_record = None, None
    if base == "spirl":
        if args.in_model is None or args.in_mr is None:
            raise ConfigError(f"variant {args.variant!r} (base spirl) needs --in-model and --in-mr")
        mae, mr_record = load_model(args.in_model, device), read_json(args.in_mr)
    run_rep = representation_for_run(params, base, args.game, mae, mr_record, args.in_wu)  # K_max, scorer, represent
    spec, represent, k_max = run_rep.spec, run_rep.represent, run_rep.k_max
    mr = None if run_rep.budget is None else run_rep.budget.mr
    prefill = None
    if params.replay.prefill == "pretraining":
        if args.in_frames is None:
            raise ConfigError(f"variant {args.variant!r} (replay.prefill: pretraining) needs --in-frames")
        with np.load(args.in_frames) as data:
            prefill = {k: data[k] for k in ("frames", "actions", "rewards_clipped", "terminals")}
    keys = [RunKey(args.variant, args.regime, args.game, seed) for seed in args.seed]
    start = time.perf_counter()
    runs = [TrainingRun(key, params, spec, represent, device, prefill) for key in keys]
    checkpoints = [work / "checkpoint.pt" for work in args.work]
    resumed = [run.load(path) for run, path in zip(runs, checkpoints, strict=True)]
    for run, was_resumed in zip(runs, resumed, strict=True):
        log.info("%s: base %s, K_max %s, %s", run.key, base, k_max or "-",
                 f"resuming at env step {run.state.env_step}" if was_resumed else "from scratch")
    with tqdm(total=runs[0].online_steps, initial=max(run.state.env_step for run in runs),
              desc=f"{args.variant} {args.game}", unit="step", mininterval=5.0) as bar:
        timing = run_training(runs, checkpoints, params.train.checkpoint_every_env_steps, on_step=bar.update,
                              log=log.info)
    wall_s = time.perf_counter() - start
    job = {"seeds": args.seed, "wall_time_s": wall_s, "timing_s": timing}
    for i, (run, key) in enumerate(zip(runs, keys, strict=True)):
        write_npz(args.out_weights[i], {k: v.detach().cpu().numpy() for k, v in run.agent.online.state_dict().items()})
        write_csv(run.state.progress or [{"env_step": run.state.env_step, "episode": 0}], args.out_progress[i])
        write_json(args.out_eval[i], {"variant": args.variant, "regime": args.regime, "game": args.game,
                                      "seed": key.seed, "metric": run.regime.metric, "points": run.state.evals,
                                      "score": final_metric(run.state.evals, run.regime.metric)})
        write_json(args.out_run[i], run_record(  # wall_time_s: this seed's share of the job (the job's is under job)
            stage="train_agent", params=to_plain(params), wildcards={**vars(key), "profile": params.experiment.profile},
            seeds={name: key.stream(name) for name in ("env", "actions", "init", "noise", "replay")},
            wall_time_s=wall_s / len(runs),
            extra={"base": base, "k_max": k_max, "mr": mr, "resumed": resumed[i], "updates": run.agent.updates,
                   "parameters": parameter_count(run.agent.online),
                   "replay_bytes": run.replay.nbytes, "compile_s": run.agent.compile_seconds,
                   "online_env_steps": run.online_steps, "timing_s": timing, "device_used": str(device),
                   "updates_per_s": len(runs) * run.agent.updates / max(timing.get("learn", 0.0), 1e-9),
                   "job": job, **total_time(run, resumed[i], wall_s, timing, len(runs))},
        ))

if __name__ == "__main__":
    main()
