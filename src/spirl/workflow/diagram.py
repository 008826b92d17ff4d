"""The stages' data flow as a Mermaid flowchart, generated from the stage definitions (docs/architecture.md).

An edge A --> B means a stage B reads a file that stage A writes (equal path templates); the label names B's input.
Inputs nobody in the plan writes (the paper's reference scores, committed benchmark results) are drawn as files.
"""

from __future__ import annotations

from spirl.workflow.imports import ROOT, direct_imports
from spirl.workflow.stages import STAGES, Stage

WORK_LAYERS = ("envs", "saliency", "agents", "training", "reporting")  # the layers whose code does a stage's work


def stage_layers(stage: Stage) -> list[str]:
    """The work layers a stage's script imports directly (its node's label); "common" when it needs none."""
    direct = {m.split(".")[1] for m in direct_imports(ROOT / stage.script) if m.count(".") >= 1}
    return [layer for layer in WORK_LAYERS if layer in direct] or ["common"]


def _writer(template: str) -> tuple[Stage, str] | None:
    """The stage and output name that write a path template (inputs may rename a wildcard, e.g. Fig. 6's run)."""
    for stage in STAGES.values():
        for name, out in stage.outputs.items():
            if out == template:
                return stage, name
    for stage in STAGES.values():  # Fig. 6 reads one fixed run's weights: the template with wildcards filled
        for name, out in stage.outputs.items():
            head = out.split("{", 1)[0]
            if template.startswith(head) and template.rsplit("/", 1)[-1] == out.rsplit("/", 1)[-1] and head:
                return stage, name
    return None


def mermaid() -> str:
    """The flowchart: one node per stage (script, layer), one edge per (writer, reader) pair."""
    lines = ["flowchart TD"]
    for stage in STAGES.values():
        label = f"{stage.name}<br/><small>{stage.script} · {' + '.join(stage_layers(stage))}</small>"
        lines.append(f'    {stage.name}["{label}"]')
    files: dict[str, str] = {}
    edges: dict[tuple[str, str], list[str]] = {}
    for stage in STAGES.values():
        for name, template in stage.inputs.items():
            found = _writer(template)
            if found is None:
                node = files.setdefault(template, f"file{len(files)}")
                edges.setdefault((node, stage.name), []).append(name)
            else:
                edges.setdefault((found[0].name, stage.name), []).append(name)
    for template, node in files.items():
        lines.append(f'    {node}[("{template}")]')
    for (src, dst), names in edges.items():
        lines.append(f"    {src} -->|{', '.join(names)}| {dst}")
    return "\n".join(lines) + "\n"


START, END = "<!-- diagram:start -->", "<!-- diagram:end -->"
DOC = ROOT / "docs" / "architecture.md"


def with_diagram(text: str) -> str:
    """A document's text with the block between START and END replaced by the current flowchart."""
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise ValueError(f"the document has no {START} ... {END} block")
    return f"{head}{START}\n```mermaid\n{mermaid()}```\n{END}{tail}"


if __name__ == "__main__":  # python src/spirl/workflow/diagram.py [--write]: print it, or update docs/architecture.md
    import sys

    if sys.argv[1:] == ["--write"]:
        DOC.write_text(with_diagram(DOC.read_text()))
    else:
        print(mermaid(), end="")
