"""The paper's tables from runs, beside the paper's numbers (SPEC §11).

A table is a list of tidy cells, one per (game, method): the measured mean (std) over seeds with the
number of seeds, a 95% bootstrap CI, the paper's value and its source, and a status that says when the
cell's runs are missing or incomplete and why. Columns come from the reference file (the paper's order),
then any requested run the paper does not print. Nothing is filled in: a cell without runs has no value.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spirl.common.seeding import generator
from spirl.params import ConfigError, Params
from spirl.reporting.scores import RunResult
from spirl.reporting.statistics import AGGREGATE_NOTE, bootstrap_ci, iqm, mean_std, normalize

REFERENCE_COLUMNS = ("table", "method", "variant", "regime", "game", "mean", "std", "unit", "source", "note")
CELL_COLUMNS = ("table", "part", "game", "method", "variant", "regime", "metric", "unit", "n_seeds", "n_expected",
                "mean", "std", "ci_low", "ci_high", "paper_mean", "paper_std", "paper_z", "paper_source", "status",
                "new_priority", "adopted", "deviation", "note")
TITLES = {
    "table1": "Tab. 1: (left) pre-training time; (right) SPIRL vs MAE-All, 100K average",
    "table2": "Tab. 2: SPIRL vs baselines (100K: average at the end; 400K: best median)",
    "table3": "Tab. 3: dynamic K vs fixed K at mr* + 5%, mr*, mr* - 5% (100K average)",
    "table11": "Tab. 11: our DE-Rainbow vs the scores reported by DER (100K average)",
    "table14": "Tab. 14: zero padding vs trainable [pad] vs masked attention (Seaquest, 100K average)",
    "table15": "Tab. 15: [cls] vs average pooling with mr = 50% (100K average, 400K best median)",
    "criteria": "Saliency criteria (ours, SPEC §13-§14): object recall, mean K and 100K return per scorer",
    "table_st": "Space-time attention over MAE tokens (ours, SPEC §16): per-frame [cls] (SPIRL, MAE-All) vs divided "
                "space-time attention over all patches vs one sequence over SPIRL's selected patches (100K average); "
                "then each agent's parameters and learner speed",
    "table_mlr": "MLR (ours, SPEC §15): our runs beside MLR's published 100K scores (Yu et al. 2022). Protocols "
                 "differ: MLR evaluates 100 episodes per run (seed count not stated), ours 50 (SPEC §10); mlr and "
                 "mlr_base run the released code's quirks (0-255 masked stream, post-terminal repeats without a "
                 "terminal mask, one-step-lagged target; mlr.* flags)",
}
AGGREGATE_ROW = "IQM (human-normalised)"
MEAN_OF_GAMES = "mean of games"


@dataclass(frozen=True)
class Reference:
    """One number the paper printed (a row of data/reference/paper_scores.csv)."""

    table: str
    method: str
    variant: str
    regime: str
    game: str
    mean: float
    std: float
    unit: str
    source: str
    note: str


def read_reference(path: Path) -> list[Reference]:
    """Read and check the reference file: exact header, numeric mean, numeric or empty std."""
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != REFERENCE_COLUMNS:
            raise ConfigError(f"{path}: header {reader.fieldnames}, expected {list(REFERENCE_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if None in row or None in row.values():
                raise ConfigError(f"{path}:{line}: expected {len(REFERENCE_COLUMNS)} fields {list(REFERENCE_COLUMNS)}")
            try:
                mean, std = float(row["mean"]), float(row["std"]) if row["std"] else math.nan
            except ValueError as err:
                raise ConfigError(f"{path}:{line}: mean/std must be numbers ({err})") from err
            if not math.isfinite(mean) or math.isnan(std) and row["std"]:
                raise ConfigError(f"{path}:{line}: mean/std must be finite numbers, got {row['mean']!r}/{row['std']!r}")
            rows.append(Reference(**{**row, "mean": mean, "std": std}))
    return rows


@dataclass(frozen=True)
class Column:
    """A method column of a table: a label, the variant that measures it ("" = reported only), a regime."""

    method: str
    variant: str
    regime: str
    label: str = ""  # the column's heading: the method, with the regime when the method has several

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.method)


def table_columns(name: str, params: Params, reference: Sequence[Reference]) -> list[Column]:
    """The paper's columns of table `name` (reference order), then requested runs the paper does not print."""
    cols = list(dict.fromkeys(Column(r.method, r.variant, r.regime) for r in reference if r.table == name))
    printed = {(c.variant, c.regime) for c in cols}
    for run in params.experiment.tables[name].runs:
        if (run.variant, run.regime) not in printed:
            cols.append(Column(f"{run.variant} ({run.regime})", run.variant, run.regime))
    regimes: dict[str, set[str]] = {}
    for c in cols:
        regimes.setdefault(c.method, set()).add(c.regime)
    return [Column(c.method, c.variant, c.regime, f"{c.method}, {c.regime.upper()}") if len(regimes[c.method]) > 1
            else c for c in cols]


def table_games(name: str, params: Params) -> list[str]:
    """The games of table `name` (experiment.games for "all")."""
    games = params.experiment.tables[name].games
    return list(params.experiment.games) if games == "all" else list(games)


def _fmt(x: float) -> str | float:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 3)


def measured_cell(runs: Sequence[RunResult], n_expected: int, reps: int, level: float,
                  rng: np.random.Generator) -> dict:
    """Mean (std, ddof 1) over the complete runs of one cell, its bootstrap CI (>= 2 seeds), and its status.

    Args:
        runs: the cell's runs (seeds 0..n_expected-1), complete or not.
        n_expected: seeds the variant asks for.
    Returns:
        dict with n_seeds, n_expected, mean, std, ci_low, ci_high, status, note.
    """
    done = [r.score for r in runs if r.complete]
    problems = [f"seed {r.key[3]} {r.status}: {r.reason}" for r in runs if not r.complete]
    complete = [r for r in runs if r.complete]
    out = {"n_seeds": len(done), "n_expected": n_expected, "mean": math.nan, "std": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "note": "; ".join(problems), "_scores": done,
           "new_priority": ", ".join(sorted({r.new_priority for r in complete if r.new_priority})),
           "adopted": "; ".join(f"seed {r.key[3]} from {r.adopted_from}" for r in complete if r.adopted_from),
           "deviation": ", ".join(sorted({f"bf16 (seed {r.key[3]})" for r in complete
                                          if r.saliency_precision == "bf16"}))}
    if not done:
        out["status"] = "missing" if all(r.status == "missing" for r in runs) else "incomplete"
        return out
    out["mean"], out["std"] = mean_std(done)
    if len(done) >= 2:  # one seed has no spread to resample: no interval rather than a collapsed one
        out["ci_low"], out["ci_high"] = bootstrap_ci(np.asarray(done)[:, None], lambda x: float(x.mean()), reps,
                                                     level, rng)
    out["status"] = "complete" if len(done) == n_expected else f"partial ({len(done)} of {n_expected} seeds)"
    return out


def build_table(name: str, params: Params, results: Mapping[tuple, RunResult], reference: Sequence[Reference]
                ) -> list[dict]:
    """Every cell of table `name` (CELL_COLUMNS), per game then method, plus IQM rows over the games.

    Args:
        results: (variant, regime, game, seed) -> RunResult for the table's runs (absent = missing).
    """
    rep, exp = params.report, params.experiment
    requested: dict[tuple[str, str], list] = {}  # (variant, regime) -> its run specs (each with its games)
    for r in exp.tables[name].runs:
        requested.setdefault((r.variant, r.regime), []).append(r)
    paper = {(r.method, r.regime, r.game): r for r in reference if r.table == name}
    rows = []
    for game in table_games(name, params):
        for col in table_columns(name, params, reference):
            ref = paper.get((col.method, col.regime, game))
            row = {"table": name, "part": "scores", "game": game, "method": col.label, "variant": col.variant,
                   "regime": col.regime, "unit": "return", "paper_mean": ref.mean if ref else math.nan,
                   "paper_std": ref.std if ref else math.nan, "paper_source": ref.source if ref else ""}
            if not col.variant:
                rows.append({**row, "status": "reported (not run here)", "note": ref.note if ref else ""})
                continue
            row["metric"] = params.train.regimes[col.regime].metric
            if (col.variant, col.regime) not in requested:
                rows.append({**row, "status": f"not requested (not in experiment.tables.{name}.runs)"})
                continue
            if not any(r.runs_on(game) for r in requested[(col.variant, col.regime)]):
                rows.append({**row, "status": f"not requested (experiment.tables.{name}.runs: {col.variant} "
                                              f"{col.regime} on other games)"})
                continue
            n = exp.variants[col.variant].n_seeds
            runs = [results.get((col.variant, col.regime, game, str(s)),
                                RunResult((col.variant, col.regime, game, str(s)), "missing", "not read",
                                          row["metric"], math.nan)) for s in range(n)]
            rng = generator(rep.seed, "table", name, col.variant, col.regime, game)
            cell = measured_cell(runs, n, rep.bootstrap_reps, rep.ci_level, rng)
            rows.append({**row, **cell, "paper_z": paper_z(cell["mean"], row["paper_mean"], row["paper_std"])})
    rows += aggregate_rows(name, params, rows, reference)
    return tidy(rows)


NUMERIC = ("mean", "std", "ci_low", "ci_high", "paper_mean", "paper_std", "paper_z")


def tidy(rows: Sequence[Mapping]) -> list[dict]:
    """Cells as the CSV holds them: every CELL_COLUMNS key, numbers rounded (empty when missing), text as given."""
    return [{k: _fmt(row.get(k, math.nan)) if k in NUMERIC else row.get(k, "") for k in CELL_COLUMNS} for row in rows]
PAPER_BAND = 2.0  # a measured mean within the paper's mean ± 2 std (over its seeds) counts as consistent


def paper_z(mean: float, paper_mean: float, paper_std: float) -> float:
    """(measured mean - paper mean) / paper std: how many of the paper's seed stds the measurement lies away.

    NaN when either mean is missing or the paper printed no positive std. |z| <= PAPER_BAND is "within the paper's
    mean ± 2 std" (a check of fidelity, not a test: with one seed here, a single run can fall outside by chance).
    """
    if not (math.isfinite(mean) and math.isfinite(paper_mean) and math.isfinite(paper_std) and paper_std > 0):
        return math.nan
    return (mean - paper_mean) / paper_std


def aggregate_rows(name: str, params: Params, cells: Sequence[dict], reference: Sequence[Reference]) -> list[dict]:
    """Per measured column, the IQM of human-normalised per-seed scores over the table's games, with CI.

    Needs >= 2 games with random/human scores and the same number of complete seeds in every game;
    otherwise the row says why it is empty.
    """
    games = table_games(name, params)
    if len(games) < 2:
        return []
    norm = {(r.method, r.game): r.mean for r in reference if r.table == "normalization"}
    rows = []
    for col in dict.fromkeys((c["method"], c["variant"], c["regime"], c.get("metric", "")) for c in cells
                             if c["variant"] and "n_seeds" in c):
        method, variant, regime, metric = col
        row = {"table": name, "part": "aggregate", "game": AGGREGATE_ROW, "method": method, "variant": variant,
               "regime": regime, "metric": metric, "unit": "human-normalised", "note": AGGREGATE_NOTE}
        mine = [c for c in cells if (c["method"], c["variant"], c["regime"]) == (method, variant, regime)]
        if any("n_seeds" not in c for c in mine):  # a run limited to some of the table's games (runs[i].games)
            rows.append({**row, "status": "not computed (not requested on every game of the table)"})
            continue
        seeds = {c["n_seeds"] for c in mine}
        missing = [g for g in games if ("random", g) not in norm or ("human", g) not in norm]
        if missing or len(seeds) != 1 or 0 in seeds:
            why = f"no random/human scores for {missing}" if missing else "unequal or zero complete seeds per game"
            rows.append({**row, "status": f"not computed ({why})"})
            continue
        rows.append({**row, **_iqm_cell(name, params, mine, norm, games)})
    return rows


def _iqm_cell(name: str, params: Params, cells: Sequence[dict], norm: Mapping, games: Sequence[str]) -> dict:
    """IQM and CI of the [seeds, games] matrix of human-normalised scores held in `cells`' per-seed scores."""
    matrix = np.stack([np.asarray(c["_scores"], dtype=np.float64) for c in cells], axis=1)  # [seeds, games]
    hns = normalize(matrix, np.array([norm[("random", g)] for g in games]),
                    np.array([norm[("human", g)] for g in games]))
    rep = params.report
    rng = generator(rep.seed, "table", name, "iqm", cells[0]["variant"], cells[0]["regime"])
    low, high = bootstrap_ci(hns, iqm, rep.bootstrap_reps, rep.ci_level, rng) if len(hns) >= 2 else (math.nan,) * 2
    return {"n_seeds": matrix.shape[0], "n_expected": cells[0]["n_expected"], "mean": iqm(hns), "std": math.nan,
            "ci_low": low, "ci_high": high, "status": "complete" if all(c["status"] == "complete" for c in cells)
            else "partial"}


def _number(x, unit: str) -> str:
    """Returns with one decimal, parameters whole, hours and normalised scores with three; never a negative zero."""
    if unit == "parameters":
        return f"{float(x):,.0f}"
    text = f"{x:.1f}" if unit in ("return", "updates/s") else f"{x:.3f}"
    return text.lstrip("-") if float(text) == 0 else text


def cell_text(c: Mapping) -> str:
    """One Markdown cell: measured mean (std) n=k/N [CI] and the paper's value, or why there is none."""
    unit, parts = c["unit"], []
    has = lambda k: c[k] != ""  # noqa: E731
    if has("mean"):
        std = f" ({_number(c['std'], unit)})" if has("std") else ""
        seeds = f" n={c['n_seeds']}/{c['n_expected']}" if c["n_seeds"] != "" else ""
        ci = f" [{_number(c['ci_low'], unit)}, {_number(c['ci_high'], unit)}]" if has("ci_low") else ""
        flag = "" if c["status"] == "complete" else f" ⚠ {c['status']}"
        parts.append(f"**{_number(c['mean'], unit)}**{std}{seeds}{ci}{flag}")
    elif not str(c["status"]).startswith("reported"):
        parts.append(f"— ({c['status']})")
    if has("paper_mean"):
        std = f" ({_number(c['paper_std'], unit)})" if has("paper_std") else ""
        label = "reported" if str(c["status"]).startswith("reported") else "paper"
        parts.append(f"{label}: {_number(c['paper_mean'], unit)}{std}")
    if has("paper_z"):
        where = "within" if abs(float(c["paper_z"])) <= PAPER_BAND else "outside"
        parts.append(f"z = {float(c['paper_z']):+.2f}: {where} the paper's mean ± {PAPER_BAND:g} std")
    return "<br>".join(parts)


def to_markdown(name: str, cells: Sequence[Mapping], profile: str) -> str:
    """The table as Markdown: per part, games as rows and methods as columns, then the notes."""
    lines = [f"## {TITLES.get(name, name)}", "", f"Profile `{profile}`. Cells: **mean** (std over seeds, ddof 1) "
             "n=complete/requested seeds [95% stratified-bootstrap CI of the mean, given from 2 seeds on]; "
             "below it the paper's value.", ""]
    for part in dict.fromkeys(c["part"] for c in cells):
        mine = [c for c in cells if c["part"] == part]
        methods = list(dict.fromkeys(c["method"] for c in mine))
        games = list(dict.fromkeys(c["game"] for c in mine))
        lines += [f"**{part}**", "", "| game | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        by = {(c["game"], c["method"]): c for c in mine}
        for game in games:
            texts = [cell_text(by[(game, m)]) if (game, m) in by else "" for m in methods]
            lines.append(f"| {game} | " + " | ".join(texts) + " |")
        lines.append("")
    notes = [f"- {c['game']}, {c['method']}: {c['note']}" for c in cells
             if c["note"] and c["part"] != "aggregate" and c["status"] not in ("complete", "reported (not run here)")]
    metrics = sorted({c["metric"] for c in cells if c["metric"] and c["part"] != "pre-training time"})
    lines += ["Notes:", f"- metric per run: {', '.join(metrics) or 'none'} (final_mean: mean over the eval "
              "episodes at the end; best_median: max over evaluation points of the median)."]
    if any(c["part"] == "aggregate" for c in cells):
        lines.append(f"- {AGGREGATE_NOTE}")
    rules = {}  # method -> the new-sample priority rules its measured cells trained with
    for c in cells:
        if c.get("new_priority"):
            rules.setdefault(c["method"], set()).update(c["new_priority"].split(", "))
    if rules:
        lines.append("- new transitions' replay priority (replay.new_priority, SPEC §8; one = 1, the released code's "
                     "and the default since 2026-12; max = the current max priority, Rainbow's): "
                     + "; ".join(f"{m}: {', '.join(sorted(r))}" for m, r in rules.items()) + ".")
    lines += [f"- {c['game']}, {c['method']}: {c['adopted']} (the same parameters; workflow/scripts/adopt_runs.py)"
              for c in cells if c.get("adopted")]
    lines += [f"- {c['game']}, {c['method']}: error maps in {c['deviation']} (runtime.saliency_precision), a named "
              "deviation from the released code's fp32 (bench/results/bf16-agreement-*.json: the selections' agreement)"
              for c in cells if c.get("deviation")]
    return "\n".join(lines + notes) + "\n"
