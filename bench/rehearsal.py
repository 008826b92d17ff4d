"""Rehearsal: every stage and variant of the paper profile at its paper shape, on a slice of the work.

    python bench/rehearsal.py          (make rehearsal; writes bench/results/rehearsal-<device>.json)

Runs the jobs of the `rehearsal` profile (conf/rehearsal.yaml: 96x96 frames, the paper's MAE, each variant's
K_max and replay capacity, 50 evaluation envs; a few hundred frames, a few MAE iterations, short runs) one
at a time, with the exact commands Snakemake and DVC run, after wiping that profile's folders. Each job's wall
time and peak resident memory are measured from outside (os.wait4), and its run.json adds per-part seconds,
the replay's bytes at full capacity and peak GPU memory. A failed job stops the rehearsal with its log.

From these it extrapolates the paper profile's work on this machine: each stage for each game's frame count
(params.yaml), and each (variant, regime) run's hours from its per-part costs (per env step, per update, per
evaluation frame, with the evaluation episode lengths measured by the desk profile's DE-Rainbow runs where
they exist). Peak memory is projected with the replay at full capacity and the full frame sets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from spirl.common.runinfo import emit_bench
from spirl.params import REPO_ROOT, load_params, resolve_variant
from spirl.saliency.pretrain import steps_per_epoch
from spirl.workflow.plan import jobs, param_files

PROFILE = "rehearsal"
SKIPPED = ("publish",)  # writes the published results/table*.csv copies: not a rehearsal's business
MACHINE_MEMORY_MB = 24 * 1024  # the development machine (and CI): 24 GB


def run_job(job, log_dir: Path) -> dict:
    """Run one job's command; returns its wall seconds and peak resident MiB (of the job's process tree)."""
    log = log_dir / f"{job.name}.out"
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(job.cmd, shell=True, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"rehearsal job {job.name} failed (exit {code}); the end of {log}:\n{tail}")
    return {"job": job.name, "stage": job.stage.name, "wall_s": round(wall, 3),
            "peak_host_mb": round(usage.ru_maxrss / 1024, 1)}  # Linux: KiB


def read(path: str) -> dict:
    return json.loads((REPO_ROOT / path).read_text())


def eval_lengths(desk: Path, game: str) -> tuple[float | None, str]:
    """Mean evaluation episode length of `game` in the desk profile's DE-Rainbow 100K run (its last point)."""
    path = desk / "runs" / "de_rainbow" / "100k" / game / "0" / "eval.json"
    if not path.is_file():
        return None, f"no {path}: evaluation hours not extrapolated"
    lengths = json.loads(path.read_text())["points"][-1]["lengths"]
    return sum(lengths) / len(lengths), f"mean length of the final evaluation of {path}"


def train_extrapolation(job, measured: dict, full, desk: Path) -> dict:
    """Hours of the paper profile's (variant, regime) run on this machine, from the rehearsal run's part costs.

    per env step: env, represent, replay, checkpoint (over every step); act (over the steps after warm-up);
    per update: learn (less the compilation paid in the first update, counted once); per evaluation frame: eval
    (frames = episode steps + one reset frame per env).
    """
    wc = job.wildcards
    rec, evals = read(job.outputs["run"]), read(job.outputs["eval"])["points"]
    parts, steps, updates = rec["timing_s"], rec["online_env_steps"], rec["updates"]
    rehearsal = resolve_variant(load_params([REPO_ROOT / f for f in param_files(job.profile)]), wc["variant"])
    warmup = 0 if rehearsal.replay.prefill == "pretraining" else rehearsal.train.learn_start_env_steps
    eval_frames = sum(sum(p["lengths"]) + len(p["lengths"]) for p in evals)
    paper = resolve_variant(full, wc["variant"])
    regime = paper.train.regimes[wc["regime"]]
    prefilled = paper.replay.prefill == "pretraining"
    full_steps = regime.total_env_steps - (paper.train.learn_start_env_steps if prefilled else 0)
    full_learning = full_steps - (0 if prefilled else paper.train.learn_start_env_steps)
    full_updates = full_learning // regime.env_steps_per_update
    per_step = sum(parts.get(p, 0.0) for p in ("env", "represent", "replay", "checkpoint")) / steps
    compile_s = rec.get("compile_s", 0.0)  # runtime.compile_learner: paid once in the first update, not per update
    per_update = max(parts.get("learn", 0.0) - compile_s, 0.0) / max(updates - (compile_s > 0), 1)
    hours = {"steps": per_step * full_steps / 3600,
             "act": parts.get("act", 0.0) / max(steps - warmup, 1) * full_learning / 3600,
             "learn": per_update * full_updates / 3600, "compile": compile_s / 3600}
    length, source = eval_lengths(desk, wc["game"])
    n_points = math.ceil(regime.total_env_steps / regime.eval_every_env_steps)
    eval_per_frame = parts.get("eval", 0.0) / max(eval_frames, 1)
    hours["eval"] = None if length is None else eval_per_frame * n_points * paper.eval.n_envs * (length + 1) / 3600
    projected = measured["peak_host_mb"] + rec["replay_bytes"] / 2**20
    return {**{k: wc[k] for k in ("variant", "regime", "game")}, "k_max": rec["k_max"],
            "torch_device": rec["device_used"],
            "rehearsal": {"env_steps": steps, "updates": updates, "eval_frames": eval_frames, "timing_s": parts,
                          "wall_s": measured["wall_s"], "peak_host_mb": measured["peak_host_mb"],
                          "peak_gpu_mb": rec.get("peak_memory_mb", {}).get("gpu")},
            "per_env_step_s": per_step, "per_update_s": per_update, "compile_s": compile_s,
            "per_eval_frame_s": eval_per_frame,
            "replay_bytes_full": rec["replay_bytes"], "projected_peak_host_mb": round(projected, 1),
            "within_machine_memory": projected < MACHINE_MEMORY_MB,
            "paper_run": {"env_steps": full_steps, "updates": full_updates, "eval_points": n_points,
                          "eval_episode_length": length, "eval_length_source": source},
            "extrapolated_hours": hours,
            "extrapolated_total_hours": None if hours["eval"] is None else sum(hours.values())}


def stage_extrapolation(job, measured: dict, full) -> dict:
    """A per-game stage's full-size hours for every game of the paper profile (its frame count scales the work)."""
    name, frame_bytes = job.stage.name, 3 * full.atari.frame_size_px ** 2
    out = {"job": job.name, "stage": name, **measured}
    sizes = full.collect.frames_per_game
    if name == "collect":
        rate = read(job.outputs["run"])["env_steps_per_s"]
        per_game = {g: n / rate / 3600 for g, n in sizes.items()}
    elif name == "pretrain_mae":
        rec = read(job.outputs["run"])
        per_it = rec["wall_time_s"] / (rec["epochs"] * steps_per_epoch(rec["n_frames"], full.mae.batch_size))
        per_game = {g: per_it * full.mae.epochs * steps_per_epoch(n, full.mae.batch_size) / 3600
                    for g, n in sizes.items()}
        out["seconds_per_iteration"] = per_it
    elif name == "estimate_mr":
        rate = read(job.outputs["mr"])["frames_per_s"]
        per_game = {g: n / rate / 3600 for g, n in sizes.items()}
        out["frames_per_s"] = rate
    else:
        return out  # figures, tables, the report: the same work at full size
    slice_frames = read(job.inputs["frames"][0].replace("frames.npz", "run.json"))["summary"]["n_frames"] \
        if job.inputs.get("frames") else read(job.outputs["run"])["summary"]["n_frames"]
    out["extrapolated_hours_per_game"] = per_game
    out["projected_peak_host_mb_per_game"] = {  # every stage holds the game's frames in memory
        g: round(measured["peak_host_mb"] + (n - slice_frames) * frame_bytes / 2**20, 1) for g, n in sizes.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--desk", type=Path, default=REPO_ROOT / "results" / "desk",
                        help="the desk profile's results (evaluation episode lengths)")
    parser.add_argument("--profile", default=PROFILE, help="the profile rehearsed (another only to test this script)")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/rehearsal-<device>.json")
    args = parser.parse_args(argv)
    params = load_params([REPO_ROOT / f for f in param_files(args.profile)])
    full = load_params([REPO_ROOT / f for f in param_files("full")])
    for folder in ("data", "results", "work", "reports"):
        shutil.rmtree(REPO_ROOT / folder / args.profile, ignore_errors=True)
    log_dir = REPO_ROOT / "work" / args.profile / "rehearsal"
    log_dir.mkdir(parents=True, exist_ok=True)
    stages, runs, started = [], [], time.perf_counter()
    for job in jobs(params):
        if job.stage.name in SKIPPED:
            continue
        measured = run_job(job, log_dir)
        print(json.dumps(measured), file=sys.stderr)
        if job.stage.name == "train":
            runs.append(train_extrapolation(job, measured, full, args.desk))
        else:
            stages.append(stage_extrapolation(job, measured, full))
    failing = [r for r in runs if not r["within_machine_memory"]]
    within = not failing and all(v < MACHINE_MEMORY_MB for s in stages
                                 for v in s.get("projected_peak_host_mb_per_game", {}).values())
    emit_bench({"bench": "rehearsal", "settings": {"params": list(param_files(args.profile)),
                                                   "extrapolated_to": list(param_files("full"))},
                "wall_s": round(time.perf_counter() - started, 1), "stages": stages, "runs": runs,
                "all_within_machine_memory": within, "machine_memory_mb": MACHINE_MEMORY_MB,
                "device": {"torch_device": runs[0]["torch_device"] if runs else "cpu"}},
               args.out or REPO_ROOT / "bench" / "results" / f"rehearsal-{device_slug()}.json")
    return 0


def device_slug() -> str:
    """"cpu", or the GPU's name in lower case with dashes (e.g. nvidia-h200): the result file's suffix."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0).lower().replace("nvidia ", "nvidia-")
    return "-".join("".join(c if c.isalnum() else " " for c in name).split())


if __name__ == "__main__":
    sys.exit(main())
