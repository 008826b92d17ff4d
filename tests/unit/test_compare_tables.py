"""workflow/scripts/compare_tables.py: two builds' tables agree except for wall time, or it says where not."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from spirl.params import REPO_ROOT

SCRIPT = REPO_ROOT / "workflow" / "scripts" / "compare_tables.py"
spec = importlib.util.spec_from_file_location("compare_tables", SCRIPT)
CT = importlib.util.module_from_spec(spec)
spec.loader.exec_module(CT)

HEADER = "table,part,game,metric,mean\n"


def _write(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(HEADER + "".join(f"{r}\n" for r in rows))


def test_identical_and_wall_time_only_tables_agree(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "table2.csv", ["table2,,Frostbite,final_mean,583.6"])
    _write(b, "table2.csv", ["table2,,Frostbite,final_mean,583.6"])
    _write(a, "table1.csv", ["table1,pre-training time,Frostbite,wall time,0.002", "table1,,Frostbite,final_mean,1"])
    _write(b, "table1.csv", ["table1,pre-training time,Frostbite,wall time,0.003", "table1,,Frostbite,final_mean,1"])
    result = CT.compare(a, b)
    assert result["agree_except_wall_time"]
    assert result["files"]["table2.csv"]["identical"]
    table1 = result["files"]["table1.csv"]
    assert not table1["identical"] and table1["differing_rows"] == [] and table1["wall_time_rows"] == [0]
    assert table1["wall_time_rows_differ"]


def test_a_changed_cell_or_a_missing_table_is_reported(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "table2.csv", ["table2,,Frostbite,final_mean,583.6", "table2,,Seaquest,final_mean,464.0"])
    _write(b, "table2.csv", ["table2,,Frostbite,final_mean,583.6", "table2,,Seaquest,final_mean,464.5"])
    _write(a, "table3.csv", ["table3,,Frostbite,final_mean,1"])
    result = CT.compare(a, b)
    assert not result["agree_except_wall_time"]
    assert result["files"]["table2.csv"]["differing_rows"] == [1]
    assert result["files"]["table3.csv"] == {"missing_in": "after"}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)
    assert proc.returncode == 1 and '"differing_rows": [\n        1\n      ]' in proc.stdout
