"""The report's aggregate figures: learning curves per game, interval estimates and a performance profile.

PYTHONHASHSEED=0 python src/make_figures.py --params params.yaml conf/full.yaml --in-runs results/full/runs.csv \
    --in-progress RUN/progress.csv ... --in-reference data/reference/paper_scores.csv \
    --out-curves ....png --out-intervals ....png --out-profile ....png
Learning curves: training-episode returns binned over env steps (report.curve_bins), mean over seeds with a
bootstrap CI band. Intervals and profile: human-normalised final scores of complete runs, stratified bootstrap.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from spirl.common.cli import base_parser, setup_logging
from spirl.common.seeding import generator
from spirl.params import ConfigError, Params, load_params
from spirl.reporting.figures import plot_intervals, plot_learning_curves, plot_performance_profile
from spirl.reporting.scores import bin_means, online_env_steps
from spirl.reporting.statistics import (
    AGGREGATE_NOTE,
    bootstrap_mean_ci,
    interval_estimates,
    normalize,
    percentile_interval,
    performance_profile,
    stratified_bootstrap,
)
from spirl.reporting.tables import read_reference
from spirl.workflow.plan import training_runs


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def learning_curves(params: Params, runs: list[dict], progress: list[Path]) -> dict:
    """(game, regime) panel -> variant -> binned mean training return with a CI band over seeds."""
    rep, per_seed = params.report, defaultdict(list)
    for run, path in zip(runs, progress, strict=True):
        rows = [r for r in read_rows(path) if r.get("return_raw", "") != ""] if path.is_file() else []
        total = online_env_steps(params, run["variant"], run["regime"])
        edges = np.linspace(0, total, rep.curve_bins + 1)
        means = bin_means([float(r["env_step"]) for r in rows], [float(r["return_raw"]) for r in rows], edges)
        per_seed[(f"{run['game']} ({run['regime']})", run["variant"])].append((edges, means))
    curves: dict = defaultdict(dict)
    for (panel, variant), seeds in per_seed.items():
        edges, stack = seeds[0][0], np.stack([m for _, m in seeds])  # [S, B]
        rng = generator(rep.seed, "curves", panel, variant)
        mean, low, high = (np.full(stack.shape[1], np.nan) for _ in range(3))
        for b in range(stack.shape[1]):
            col = stack[:, b][np.isfinite(stack[:, b])]
            if col.size:
                mean[b], (low[b], high[b]) = col.mean(), bootstrap_mean_ci(col, rep.bootstrap_reps, rep.ci_level, rng)
        curves[panel][variant] = {"env_step": (edges[:-1] + edges[1:]) / 2, "mean": mean, "low": low, "high": high,
                                  "n_seeds": len(seeds)}
    return curves


def normalised_matrices(runs: list[dict], reference_path: Path) -> dict[str, np.ndarray]:
    """'variant (regime, n games)' -> [seeds, games] human-normalised final scores, complete runs only.

    A (variant, regime) whose games have different numbers of complete seeds is left out (and logged).
    """
    norm = {(r.method, r.game): r.mean for r in read_reference(reference_path) if r.table == "normalization"}
    cells = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["status"] == "complete":
            cells[(r["variant"], r["regime"])][r["game"]].append(float(r["score"]))
    out = {}
    for (variant, regime), games in cells.items():
        if len({len(v) for v in games.values()}) != 1:
            continue
        names = list(games)
        if any(("random", g) not in norm for g in names):
            raise ConfigError(f"{reference_path}: no random/human score for one of {names}")
        raw = np.array([games[g] for g in names]).T  # [seeds, games]
        out[f"{variant} ({regime}, {len(names)} games)"] = normalize(
            raw, np.array([norm[("random", g)] for g in names]), np.array([norm[("human", g)] for g in names]))
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--in-runs", type=Path, required=True)
    parser.add_argument("--in-progress", nargs="+", type=Path, required=True)
    parser.add_argument("--in-reference", type=Path, required=True)
    for name in ("curves", "intervals", "profile"):
        parser.add_argument(f"--out-{name}", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("make_figures", args.log)
    params = load_params(args.params)
    rep, runs = params.report, training_runs(params)
    if len(args.in_progress) != len(runs):
        raise ConfigError(f"{len(args.in_progress)} --in-progress files for {len(runs)} runs")
    profile = params.experiment.profile
    plot_learning_curves(learning_curves(params, runs, args.in_progress), args.out_curves,
                         f"Training-episode returns ({profile} profile; mean over seeds, {rep.ci_level:.0%} CI)")
    matrices = normalised_matrices(read_rows(args.in_runs), args.in_reference)
    estimates = {label: interval_estimates(x, rep.bootstrap_reps, rep.ci_level, generator(rep.seed, "iv", label))
                 for label, x in matrices.items()}
    plot_intervals(estimates, args.out_intervals, f"Aggregate human-normalised scores ({profile} profile)",
                   AGGREGATE_NOTE)
    top = max([float(x.max()) for x in matrices.values()] + [0.0])
    taus = np.linspace(0.0, max(top, 1e-3) * 1.05, rep.profile_taus)
    profiles = {}
    for label, x in matrices.items():
        samples = stratified_bootstrap(x, lambda m: performance_profile(m, taus), rep.bootstrap_reps,
                                       generator(rep.seed, "profile", label))  # [reps, taus]
        bands = np.array([percentile_interval(samples[:, i], rep.ci_level) for i in range(len(taus))])
        profiles[label] = {"tau": taus, "fraction": performance_profile(x, taus), "low": bands[:, 0],
                           "high": bands[:, 1]}
    plot_performance_profile(profiles, args.out_profile, f"Performance profile ({profile} profile)", AGGREGATE_NOTE)
    log.info("figures: %d curve panels, %d labels with complete runs", len(runs), len(matrices))


if __name__ == "__main__":
    main()
