"""docs/architecture.md shows the current data flow: its diagram is the one generated from the stages."""

from __future__ import annotations

import pytest

from spirl.workflow import diagram
from spirl.workflow.stages import STAGES


def test_the_committed_diagram_is_current():
    text = diagram.DOC.read_text()
    assert diagram.with_diagram(text) == text, "stale: run `python src/spirl/workflow/diagram.py --write`"


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
        diagram.with_diagram("# no block here\n")
