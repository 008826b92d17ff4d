"""Parts of tables beside the returns (SPEC §11, §14, §16): Tab. 1's pre-training time, the criteria table's
object recall, the space-time table's costs; each as tidy cells (spirl.reporting.tables.CELL_COLUMNS)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from spirl.params import Params
from spirl.reporting.scores import RunResult
from spirl.reporting.tables import MEAN_OF_GAMES, Reference, tidy
from spirl.reporting.timing import total_seconds


def device_name(info: Mapping) -> str:
    """A job's device in words, from its run.json: the GPU's name, or the CPU with its core count."""
    machine = info.get("device", {})
    if "gpu" in machine:
        return str(machine["gpu"])
    return f"CPU ({machine.get('cpu_count', '?')} cores, device {info.get('device_used', 'cpu')})"


def pretraining_time_rows(params: Params, mae_runs: Mapping[str, Mapping | None], reference: Sequence[Reference]
                          ) -> list[dict]:
    """Tab. 1 (left): this pipeline's MAE pre-training hours per game and their mean, beside the paper's rows.

    Args:
        mae_runs: game -> the MAE stage's run.json (None if absent).
    """
    base = {"table": "table1", "part": "pre-training time", "unit": "hours", "variant": "", "regime": "",
            "metric": "wall time"}
    hours, rows = {}, []
    for game, info in mae_runs.items():
        row = {**base, "game": game, "method": "SPIRL (this pipeline)"}
        if info is None or "wall_time_s" not in info:
            rows.append({**row, "status": "missing", "note": "no run.json of the MAE pre-training"})
            continue
        if total_seconds(info) is None:  # resumed; the earlier processes' time unknown
            rows.append({**row, "status": "missing", "note": "resumed from a checkpoint that did not record the "
                         "earlier processes' time"})
            continue
        hours[game] = total_seconds(info) / 3600.0
        rows.append({**row, "mean": hours[game], "status": "complete", "note": f"measured on {device_name(info)}"})
    ours = {**base, "game": MEAN_OF_GAMES, "method": "SPIRL (this pipeline)"}
    complete = len(hours) == len(mae_runs) and hours
    ours.update({"mean": float(np.mean(list(hours.values()))) if complete else math.nan,
                 "status": "complete" if complete else "missing",
                 "note": f"mean over {len(hours)} games; the paper's times are its authors' (4 games, their machine)"})
    reported = []
    for ref in (r for r in reference if r.table == "table1_time"):
        if ref.method == "SPIRL":
            ours.update({"paper_mean": ref.mean, "paper_source": ref.source})
        else:
            reported.append({**base, "game": MEAN_OF_GAMES, "method": ref.method, "paper_mean": ref.mean,
                             "paper_source": ref.source, "note": ref.note, "status": "reported (not run here)"})
    rows += [ours, *reported]
    return tidy(rows)


QUALITY_PARTS = (("recall", "object recall", "share of dynamic objects"), ("mean_k", "mean K", "patches"),
                 ("lift", "recall lift over random patches", "ratio"))


def criteria_quality_rows(params: Params, records: Mapping[str, Mapping | None]) -> list[dict]:
    """The criteria table's saliency-quality parts (SPEC §14): per game and scorer (criteria.scorers), the recall
    of the game's dynamic objects, the mean K and the lift over random patches with the same K, each with its
    95% bootstrap CI over frames, from the game's saliency_quality JSON (src/saliency_quality.py).

    Args:
        records: game -> that JSON (None if absent: the cells say so).
    """
    rows = []
    for stat, part, unit in QUALITY_PARTS:
        for game, record in records.items():
            scorers = (record or {}).get("result", {}).get("scorers", {})
            for scorer in params.criteria.scorers:
                row = {"table": "criteria", "part": part, "game": game, "method": scorer, "variant": "",
                       "regime": "", "metric": "", "unit": unit}
                entry = scorers.get(scorer, {}).get(stat)
                if entry is None or entry.get("value") is None:
                    why = "no saliency_quality record" if record is None else f"{scorer} not scored on {game}"
                    rows.append({**row, "status": "missing", "note": why})
                    continue
                low, high = entry.get("ci", (None, None))
                frames = scorers[scorer].get("n_frames", "")
                rows.append({**row, "mean": entry["value"], "ci_low": math.nan if low is None else low,
                             "ci_high": math.nan if high is None else high, "status": "complete",
                             "note": f"{frames} OCAtari-labelled frames"})
    return tidy(rows)


COST_PARTS = (("Q-network parameters", "parameters"), ("learner updates/s", "updates/s"))


def cost_rows(name: str, params: Params, results: Mapping[tuple, RunResult]) -> list[dict]:
    """Per measured column of table `name`, what its agent costs (SPEC §16's table): the Q-network's parameters
    (every run of a variant has the same) and the learner's updates per second of learning time, the mean over
    the column's complete runs on every game, with the devices they ran on (run.json)."""
    exp, rows = params.experiment, []
    columns = dict.fromkeys((r.variant, r.regime) for r in exp.tables[name].runs)
    for label, unit in COST_PARTS:
        for variant, regime in columns:
            runs = [r for (v, g, *_), r in ((k[:2], r) for k, r in results.items())
                    if (v, g) == (variant, regime) and r.complete]
            row = {"table": name, "part": "cost", "game": label, "method": f"{variant} ({regime})",
                   "variant": variant, "regime": regime, "metric": "", "unit": unit}
            values = [r.parameters if unit == "parameters" else r.updates_per_s for r in runs]
            values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
            if not values:
                why = "no complete run" if not runs else "not recorded in the runs' run.json"
                rows.append({**row, "status": "missing", "note": why})
                continue
            devices = sorted({r.device for r in runs if r.device})
            rows.append({**row, "mean": float(np.mean(values)), "n_seeds": len(values), "n_expected": len(values),
                         "status": "complete", "note": f"{len(values)} runs on {', '.join(devices) or 'unknown'}"})
    return tidy(rows)
