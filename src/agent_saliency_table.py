"""The agent-saliency table (SPEC §16): per probed run, where its perturbation saliency lies, from the runs' JSONs.

CSV: one row per run (variant, regime, game, seed, frames, the mean shares and areas, the lifts); Markdown: the
section the report includes, with each run's figure. Lift = the saliency's share on a region / the region's share
of the frame's area: 1 is what a map spread evenly over the frame gives.
"""

from __future__ import annotations

import math
from pathlib import Path

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import atomic_path, read_json
from spirl.common.plots import write_csv
from spirl.params import load_params


def missing_row(path: Path) -> dict:
    """The row of a probed run without a record (.../agent_saliency/<variant>/<regime>/<game>/<seed>.json): named,
    nothing measured (`make report-now` builds the table from the records there are)."""
    variant, regime, game = path.parts[-4:-1]
    return {"variant": variant, "regime": regime, "game": game, "seed": path.stem, "frames": 0, "seconds": None,
            "status": "missing: no record (the stage has not run, e.g. the run's weights are not here)"}


def table_rows(records: list[dict]) -> list[dict]:
    """One row per agent_saliency record: its run, frames, mean shares and areas, and the lifts (a row without a
    record, `missing_row`, passes through)."""
    rows = []
    for rec in records:
        if "status" in rec:
            rows.append({**rec, **{k: math.nan for k in ("objects_share", "objects_area", "selected_share",
                                                          "selected_area", "objects_lift", "selected_lift")}})
            continue
        mean, wc = rec["result"]["mean"], rec["wildcards"]
        row = {"variant": wc["variant"], "regime": wc["regime"], "game": wc["game"], "seed": wc["seed"],
               "frames": rec["result"]["n_frames"], "objects_share": mean["objects_share"],
               "objects_area": mean["objects_area"], "selected_share": mean.get("selected_share", math.nan),
               "selected_area": mean.get("selected_area", math.nan), "seconds": rec.get("wall_time_s"),
               "status": "complete"}
        for part in ("objects", "selected"):
            area = row[f"{part}_area"]
            row[f"{part}_lift"] = row[f"{part}_share"] / area if area and not math.isnan(area) else math.nan
        rows.append(row)
    return rows


def _cell(share: float, area: float, lift: float) -> str:
    return "—" if math.isnan(share) else f"{share:.2f} ({area:.2f}; ×{lift:.1f})"


def markdown(rows: list[dict], profile: str) -> str:
    lines = ["## What the agents look at (SPEC §16)", "",
             f"Profile `{profile}`. Perturbation saliency (Greydanus et al. 2018: the newest frame blurred inside a "
             "Gaussian mask on a grid, ½‖ΔQ‖² of the expected Q-values, through the whole representation) on "
             "OCAtari's held-out object frames. Cells: the share of the map's mass on the region (the region's "
             "share of the frame's area; lift = their ratio, 1 for a map spread evenly).", "",
             "| run | frames | on moving objects | inside the selected patches | figure |", "|---|---|---|---|---|"]
    for r in rows:
        name = f"{r['variant']} {r['regime']} {r['game']} seed {r['seed']}"
        if r["status"] != "complete":
            lines.append(f"| {name} | — | — ({r['status']}) | — | — |")
            continue
        fig = f"fig_agent_saliency/{r['variant']}/{r['regime']}/{r['game']}/{r['seed']}.png"
        lines.append(f"| {name} | {r['frames']} | {_cell(r['objects_share'], r['objects_area'], r['objects_lift'])} "
                     f"| {_cell(r['selected_share'], r['selected_area'], r['selected_lift'])} | [png]({fig}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--in-json", type=Path, nargs="+", required=True)
    parser.add_argument("--out-csv", type=Path, required=True)
    parser.add_argument("--out-md", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("agent_saliency_table", args.log)
    profile = load_params(args.params).experiment.profile
    rows = table_rows([read_json(path) if path.is_file() else missing_row(path) for path in args.in_json])
    write_csv(rows, args.out_csv)
    with atomic_path(args.out_md) as tmp:
        tmp.write_text(markdown(rows, profile))
    log.info("agent saliency: %d runs -> %s, %s", len(rows), args.out_csv, args.out_md)


if __name__ == "__main__":
    main()
