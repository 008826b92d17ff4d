"""docs/architecture.md shows the current data flow: its diagram is the one generated from the stages."""

from __future__ import annotations

import pytest

from spirl.workflow import diagram
from spirl.workflow.stages import STAGES


def test_the_committed_diagram_and_module_index_are_current():
    text = diagram.DOC.read_text()
    assert diagram.with_generated(text) == text, "stale: run `python src/spirl/workflow/diagram.py --write`"


def test_the_module_index_names_every_module_with_its_first_sentence():
    index = diagram.module_index()
    assert "  - `registry`: The saliency scorers of SPEC §13, declared once: " in index
    assert "  - `wu/model`: " in index and "- **`workflow`**" in index
    modules = [p for p in (diagram.ROOT / "src" / "spirl").rglob("*.py") if p.parent.name != "spirl"]
    layer_inits = [p for p in modules if p.name == "__init__.py" and p.parent.parent.name == "spirl"]
    assert index.count("\n  - `") == len(modules) - len(layer_inits)


def test_every_stage_is_a_node_and_every_input_an_edge():
    chart = diagram.mermaid()
    for stage in STAGES.values():
        assert f'    {stage.name}["{stage.name}<br/>' in chart
        incoming = [line for line in chart.splitlines() if line.endswith(f"| {stage.name}")]
        named = {name for line in incoming for name in line.split("|")[1].split(", ")}
        assert named == set(stage.inputs), stage.name


def test_the_training_edges_are_the_files_it_reads():
    chart = diagram.mermaid()
    assert "    collect -->|frames| train" in chart and "    estimate_mr -->|mr| train" in chart
    assert "    train -->|weights| fig6" in chart  # Fig. 6 reads one fixed run's weights (a filled-in template)


def test_a_document_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="diagram:start"):
        diagram.with_generated("# no block here\n")
