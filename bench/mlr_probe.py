"""Investigation: an MLR-family variant on real frames for a bounded time, every update's losses logged (SPEC §15).

    python bench/mlr_probe.py --variant der_mlr --game Frostbite --max-seconds 3000 \\
        --out-dir reports/desk/results/investigate/mlr --work work/desk/investigate/mlr

The variant trains exactly as a pipeline run (spirl.training: its env, replay, agent, recipe at the profile's
settings, default the desk profile = the paper's), from env step 0, until --env-steps or --max-seconds; it resumes
from its checkpoint in --work (written every --checkpoint-seconds), so a killed probe continues. Per update it logs
the env step, the RL (C51) loss, L_MLR and the mean cosine between predicted and target projections; with a random
predictor the cosine is near 0 and L_MLR near 2. Outputs in --out-dir: <variant>-<game>-updates.csv (one row per
update) and <variant>-<game>.json (the settings, the seconds per update, the loss and cosine over windows of
updates, and how far the run got). No returns are claimed: the run stops long before any evaluation.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spirl.agents.mlr.loss import projection
from spirl.agents.mlr.masking import apply_masks, draw_masks
from spirl.agents.represent import representation_for_run
from spirl.common.io import atomic_path
from spirl.common.runinfo import emit_bench
from spirl.params import load_params, resolve_variant
from spirl.training.loop import SingleLearner, step_group
from spirl.training.run import RunKey, TrainingRun
from spirl.workflow.plan import param_files

FIELDS = ("update", "env_step", "rl_loss", "mlr_loss", "cosine", "wall_s")


def summary(rows: list[dict], window: int) -> list[dict]:
    """Means of the loss and cosine over consecutive windows of `window` updates."""
    out = []
    for start in range(0, len(rows), window):
        part = rows[start:start + window]
        out.append({"updates": [part[0]["update"], part[-1]["update"]],
                    "mlr_loss": float(np.mean([r["mlr_loss"] for r in part])),
                    "cosine": float(np.mean([r["cosine"] for r in part])),
                    "rl_loss": float(np.mean([r["rl_loss"] for r in part]))})
    return out


def plot_probe(rows: list[dict], title: str, path: Path) -> None:
    """The probe's curves: L_MLR (log scale) and the cosine of ŷ and ȳ over updates, the RL loss beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spirl.common.plots import save_figure

    updates = [r["update"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    for ax, key, label in zip(axes, ("mlr_loss", "cosine", "rl_loss"), ("L_MLR = mean w(2 − 2cos)", "cos(ŷ, ȳ)",
                                                                        "C51 loss"), strict=True):
        ax.plot(updates, [r[key] for r in rows], lw=0.8)
        ax.set_xlabel("update")
        ax.set_title(label, fontsize=9)
    axes[0].set_yscale("log")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


@torch.no_grad()
def target_spread(run: TrainingRun, batch_size: int = 32) -> dict:
    """How alike the MLR targets ȳ of different frames are, on one replay batch of windows: the mean and least cosine
    between the targets of different (sample, step) pairs; and how well the predictions ŷ match them, plainly and with
    the batch's mean target taken from both (the centred cosine: does ŷ carry what is particular to its frame?). A loss
    near 0 with targets this alike says the projections agree across frames, not that each frame was rebuilt."""
    branch, net, s = run.agent.mlr, run.agent.online, run.agent.mlr.settings
    batch = run.replay.sample(batch_size, run.beta(), window=run.window)
    obs, actions = torch.as_tensor(batch["window_obs"]), torch.as_tensor(batch["window_actions"])
    b, t, height = obs.shape[0], obs.shape[1], obs.shape[3]
    clean = obs.flatten(0, 1).float() / 255.0
    target = branch.target.project(branch._latents(branch.target.encoder, clean, (b, t))).flatten(0, 1)  # [B·T, P]
    unit = torch.nn.functional.normalize(target, dim=-1)
    pairs = unit @ unit.T  # [B·T, B·T]
    others = pairs[~torch.eye(len(unit), dtype=torch.bool)]
    masks = draw_masks(branch.mask_rng, t, s.cube_depth, s.mask_ratio, height, s.mask_cell_px)
    states = branch._latents(net.encoder, apply_masks(obs, masks, s.masked_scale).flatten(0, 1), (b, t))
    predicted = branch.predictor(projection(net.head, branch.decoder(states, actions))).flatten(0, 1)  # [B·T, P]
    mean = target.mean(dim=0, keepdim=True)  # what every frame's target shares
    centred = torch.nn.functional.cosine_similarity(predicted - mean, target - mean, dim=-1)
    return {"targets_mean_pairwise_cosine": float(others.mean()), "targets_min_pairwise_cosine": float(others.min()),
            "prediction_cosine": float(torch.nn.functional.cosine_similarity(predicted, target, dim=-1).mean()),
            "centred_prediction_cosine": float(centred.mean()), "pairs": int(others.numel()), "batch": b, "window": t}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="desk")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--game", default="Frostbite")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-steps", type=int, default=100_000)
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--checkpoint-seconds", type=float, default=600.0)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--diagnose-only", action="store_true",
                        help="load the probe's checkpoint, measure target_spread and add it to its JSON; no training")
    args = parser.parse_args(argv)
    params = resolve_variant(load_params(param_files(args.profile)), args.variant)
    if not params.mlr.loss:
        parser.error(f"variant {args.variant!r} has no MLR loss (mlr.loss false): nothing to probe")
    torch.set_num_threads(params.runtime.torch_threads)
    rep = representation_for_run(params, params.experiment.variants[args.variant].base, args.game, None, None)
    run = TrainingRun(RunKey(args.variant, "100k", args.game, args.seed), params, rep.spec, rep.represent,
                      torch.device("cpu"))
    name = f"{args.variant}-{args.game}"
    checkpoint, rows_path = args.work / f"{name}.pt", args.work / f"{name}-updates.csv"
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    if run.load(checkpoint) and rows_path.is_file():
        with rows_path.open() as fh:  # the rows up to the checkpoint (later ones were not saved with it)
            rows = [{k: float(v) if k not in ("update", "env_step") else int(v) for k, v in r.items()}
                    for r in csv.DictReader(fh) if int(r["update"]) <= run.agent.updates]
    if args.diagnose_only:
        record_path = args.out_dir / f"{name}.json"
        if not checkpoint.is_file() or not record_path.is_file():
            parser.error(f"--diagnose-only needs {checkpoint} and {record_path}")
        record = json.loads(record_path.read_text())
        record["results"]["target_spread"] = {"at_update": run.agent.updates, **target_spread(run)}
        with atomic_path(record_path) as tmp:
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        with (args.out_dir / f"{name}-updates.csv").open() as fh:
            done = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]
        plot_probe(done, f"{args.variant} on {args.game} ({args.profile}): {len(done)} updates", args.out_dir /
                   f"{name}.png")
        return 0
    learner, start, saved = SingleLearner(run.agent), time.perf_counter(), time.perf_counter()
    while run.state.env_step < args.env_steps and time.perf_counter() - start < args.max_seconds:
        before, began = run.agent.updates, time.perf_counter()
        step_group([run], learner, run.represent, run.clock)
        done = run.agent.updates - before
        if done:  # a learning step: each of its updates' losses, the last `done` entries the run recorded
            per = (time.perf_counter() - began) / done
            for k in range(done):
                back = k - done  # -done .. -1, oldest first
                rows.append({"update": before + 1 + k, "env_step": run.state.env_step,
                             "rl_loss": run.state.losses[back], "mlr_loss": run.state.mlr[back][0],
                             "cosine": run.state.mlr[back][1], "wall_s": per})
        if time.perf_counter() - saved > args.checkpoint_seconds:
            run.save(checkpoint)
            with atomic_path(rows_path) as tmp, open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, FIELDS)
                writer.writeheader()
                writer.writerows(rows)
            saved = time.perf_counter()
    run.save(checkpoint)  # the end too, so --diagnose-only reads the probe's last state
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out_dir / f"{name}-updates.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    if rows:
        plot_probe(rows, f"{args.variant} on {args.game} ({args.profile}): {len(rows)} updates",
                   args.out_dir / f"{name}.png")
    learned = [r["wall_s"] for r in rows]
    emit_bench({"bench": "mlr_probe", "settings": {"profile": args.profile, "variant": args.variant,
                                                   "game": args.game, "seed": args.seed, "env_steps": args.env_steps,
                                                   "max_seconds": args.max_seconds,
                                                   "load_average_1min": os.getloadavg()[0]},
                "results": {"env_steps": run.state.env_step, "updates": run.agent.updates,
                            "learn_start_env_steps": run.learn_start,
                            "seconds_per_update_median": float(np.median(learned)) if learned else None,
                            "first_updates": rows[:5], "windows": summary(rows, max(1, len(rows) // 20)),
                            "target_spread": {"at_update": run.agent.updates, **target_spread(run)}
                            if run.agent.updates else None,
                            "note": "no evaluation: the probe stops long before a run's end"},
                "device": {"torch_device": "cpu"}}, args.out_dir / f"{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
