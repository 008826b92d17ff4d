"""Reading runs back: each run's evaluation points, whether it is complete, and its final metric (SPEC §10).

A run is *complete* when its eval.json and run.json exist, name the run they belong to, and hold one
evaluation point at every env step the regime schedules, each with `eval.n_envs` finite episode returns.
Anything else is *missing* (no eval.json) or *incomplete* (with the reason), and tables say so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spirl.params import Params, resolve_variant
from spirl.training.metrics import final_metric

RUN_FIELDS = ("variant", "regime", "game", "seed")


@dataclass(frozen=True)
class RunResult:
    """One run read back from its files.

    Attributes:
        key: (variant, regime, game, seed) as strings.
        status: "complete", "incomplete" or "missing".
        reason: why a run is not complete ("" when it is).
        metric: "final_mean" or "best_median" (the regime's).
        score: the run's final metric (nan unless complete).
        points: the evaluation points as stored ({env_step, returns, ...}).
        wall_time_s: the job's wall time from run.json (nan when unknown).
        device: the device the run used ("" when unknown).
        new_priority: replay.new_priority the run trained with, from run.json ("" when unknown).
        adopted_from: the variant whose run this is, when workflow/scripts/adopt_runs.py adopted it ("" otherwise).
        parameters: the Q-network's trainable parameters, from run.json (None when not recorded).
        updates_per_s: the learner's updates per second of learning time, from run.json (nan when unknown).
        saliency_precision: runtime.saliency_precision a SPIRL-family run's error maps were computed in ("" when
            unknown or a pixel run).
    """

    key: tuple[str, str, str, str]
    status: str
    reason: str
    metric: str
    score: float
    points: tuple[dict, ...] = field(default=(), repr=False)
    wall_time_s: float = math.nan
    device: str = ""
    new_priority: str = ""
    adopted_from: str = ""
    parameters: int | None = None
    updates_per_s: float = math.nan
    saliency_precision: str = ""

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def expected_eval_steps(online_env_steps: int, eval_every_env_steps: int) -> list[int]:
    """The env steps at which a run evaluates: every `eval_every_env_steps` and at the end.

    E.g. (400_000, 50_000) -> [50_000, ..., 400_000]; (300, 200) -> [200, 300].
    """
    steps = list(range(eval_every_env_steps, online_env_steps + 1, eval_every_env_steps))
    return steps if steps and steps[-1] == online_env_steps else [*steps, online_env_steps]


def online_env_steps(params: Params, variant: str, regime: str) -> int:
    """Env steps a run takes itself: the regime's total, less the warm-up a replay pre-fill replaces (SPEC §9.5)."""
    resolved = resolve_variant(params, variant)
    total = resolved.train.regimes[regime].total_env_steps
    return total - (resolved.train.learn_start_env_steps if resolved.replay.prefill == "pretraining" else 0)


def _read(path: Path) -> tuple[dict | None, str]:
    """A JSON document, or None and why not."""
    if not path.is_file():
        return None, f"{path} does not exist"
    try:
        return json.loads(path.read_text()), ""
    except (OSError, json.JSONDecodeError) as err:
        return None, f"{path} is unreadable ({err})"


def check_points(points: Sequence[Mapping], steps: Sequence[int], n_envs: int) -> str:
    """Why `points` do not match the schedule (`steps`, `n_envs` returns each), or "" when they do."""
    got = [p.get("env_step") for p in points]
    if got != list(steps):
        return f"evaluation points at env steps {got}, expected {list(steps)}"
    for p in points:
        returns = p.get("returns", [])
        if len(returns) != n_envs:
            return f"{len(returns)} episode returns at env step {p['env_step']}, expected {n_envs}"
        if not all(isinstance(r, int | float) and math.isfinite(r) for r in returns):
            return f"non-finite episode return at env step {p['env_step']}"
    return ""


def load_run(key: Sequence[str], eval_path: Path, run_path: Path, params: Params) -> RunResult:
    """Read one run's eval.json and run.json and decide whether it is complete (see module doc)."""
    variant, regime, game, seed = (str(k) for k in key)
    metric = params.train.regimes[regime].metric
    doc, why = _read(Path(eval_path))
    if doc is not None and not isinstance(doc, dict):
        doc, why = None, f"{eval_path} is not a JSON object"
    if doc is None:
        status = "missing" if not Path(eval_path).exists() else "incomplete"
        return RunResult((variant, regime, game, seed), status, why, metric, math.nan)
    info, why_run = _read(Path(run_path))
    if info is not None and not isinstance(info, dict):
        info, why_run = None, f"{run_path} is not a JSON object"
    named = tuple(str(doc.get(f)) for f in RUN_FIELDS)
    points = tuple(doc.get("points", []))
    steps = expected_eval_steps(online_env_steps(params, variant, regime),
                                params.train.regimes[regime].eval_every_env_steps)
    reason = (f"{eval_path} belongs to run {named}" if named != (variant, regime, game, seed)
              else check_points(points, steps, params.eval.n_envs) or why_run)
    wall = float(info.get("wall_time_s", math.nan)) if info else math.nan
    device = str(info.get("device_used", "")) if info else ""
    priority = str(info.get("params", {}).get("replay", {}).get("new_priority", "")) if info else ""
    adopted = str(info.get("adopted_from", {}).get("variant", "")) if info else ""
    parameters = info.get("parameters") if info else None
    rate = float(info.get("updates_per_s", math.nan)) if info else math.nan
    precision = str(info.get("params", {}).get("runtime", {}).get("saliency_precision", "")) \
        if info and info.get("base") == "spirl" else ""  # only a SPIRL-family run computes error maps
    score = math.nan if reason else final_metric(points, metric)
    return RunResult((variant, regime, game, seed), "incomplete" if reason else "complete", reason, metric, score,
                     points, wall, device, priority, adopted, parameters, rate, precision)


def episode_rows(results: Sequence[RunResult]) -> list[dict]:
    """The tidy per-episode table (scores.csv): one row per (run, evaluation point, episode)."""
    rows = []
    for r in results:
        for p in r.points:
            for episode, ret in enumerate(p["returns"]):
                rows.append({**dict(zip(RUN_FIELDS, r.key, strict=True)), "env_step": p["env_step"],
                             "episode": episode, "return": ret})
    return rows


def run_rows(results: Sequence[RunResult]) -> list[dict]:
    """The tidy per-run table (runs.csv): status, metric, final score and reason of every run.

    Deterministic (no wall times: those stay in each run's run.json), so both tools write the same bytes.
    """
    return [{**dict(zip(RUN_FIELDS, r.key, strict=True)), "status": r.status, "metric": r.metric,
             "score": "" if math.isnan(r.score) else r.score, "n_points": len(r.points), "reason": r.reason}
            for r in results]


def bin_means(steps: Sequence[float], values: Sequence[float], edges: Sequence[float]) -> np.ndarray:
    """Mean of the values whose step lies in each bin (edges[i], edges[i+1]]; nan for an empty bin.

    Args:
        steps: [n] env steps (e.g. where training episodes ended); values: [n]; edges: [B+1] increasing.
    Returns:
        [B] bin means.
    """
    steps, values, edges = (np.asarray(a, dtype=np.float64) for a in (steps, values, edges))
    which = np.searchsorted(edges, steps, side="left") - 1  # bin b holds edges[b] < step <= edges[b+1]
    out = np.full(len(edges) - 1, np.nan)
    for b in range(len(out)):
        inside = values[which == b]
        if inside.size:
            out[b] = inside.mean()
    return out
