"""The Makefile's evidence round trip: `desk-evidence` copies a run's records (never weights, models or frames)
under reports/desk/, and `desk-restore` puts them back where the pipeline reads them without overwriting."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from spirl.params import REPO_ROOT

RUN = Path("runs/spirl/100k/Frostbite/0")
MAE = Path("mae/Frostbite")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _make(root: Path, target: str) -> None:
    subprocess.run(["make", "--no-print-directory", target], cwd=root, check=True, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_desk_evidence_then_restore_round_trips_the_records_only(tmp_path):
    shutil.copy(REPO_ROOT / "Makefile", tmp_path / "Makefile")
    results, data, reports = tmp_path / "results/desk", tmp_path / "data/desk", tmp_path / "reports/desk"
    records = {results / RUN / name: f"{name} of the run" for name in ("eval.json", "progress.csv", "run.json")}
    records |= {results / "mr/Frostbite/mr.json": "mr", results / "tables/table2.csv": "table",
                data / MAE / "loss.csv": "loss", data / MAE / "run.json": "mae run",
                data / "frames/Frostbite/run.json": "frames run"}
    heavy = [results / RUN / "weights.npz", data / MAE / "model.npz", data / "frames/Frostbite/frames.npz"]
    for path, text in records.items():
        _write(path, text)
    for path in heavy:
        _write(path, "weights")

    _make(tmp_path, "desk-evidence")
    for path, text in records.items():
        kind = path.relative_to(tmp_path).parts[0]  # results or data
        assert (reports / kind / path.relative_to(tmp_path / kind / "desk")).read_text() == text
    assert not [p for p in reports.rglob("*") if p.suffix == ".npz"]

    shutil.rmtree(tmp_path / "results")
    shutil.rmtree(tmp_path / "data")
    _write(results / RUN / "eval.json", "a newer evaluation")  # exists: restore must leave it alone
    _make(tmp_path, "desk-restore")
    for path, text in records.items():
        assert path.read_text() == ("a newer evaluation" if path.name == "eval.json" else text)
    assert not [p for p in tmp_path.rglob("*.npz")]
