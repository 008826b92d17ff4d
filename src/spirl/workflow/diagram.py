"""docs/architecture.md's generated parts: the stages' data flow as a Mermaid flowchart (from the stage
definitions) and the module index (each module's first docstring sentence, layer by layer).

An edge A --> B means a stage B reads a file that stage A writes (equal path templates); the label names B's input.
Inputs nobody in the plan writes (the paper's reference scores, committed benchmark results) are drawn as files.
"""

from __future__ import annotations

import ast
import re

from spirl.workflow.imports import LAYERS, ROOT, direct_imports
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


def first_sentence(path) -> str:
    """The first sentence of a module's docstring (up to the first '. ' or the end of its first paragraph)."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    paragraph = " ".join(doc.split("\n\n", 1)[0].split())
    ends = [m.end() for m in re.finditer(r"[.?!](?= [A-Z(])", paragraph)
            if not re.search(r"(\b(Fig|Tab|al|vs|e\.g|i\.e|cf)|\b[A-Za-z])\.$", paragraph[:m.end()])]
    sentence = paragraph[:ends[0]] if ends else paragraph
    return sentence if sentence.endswith((".", "?", "!")) else sentence + "."


def module_index() -> str:
    """A Markdown list per layer: each module of src/spirl (sub-packages' modules included) and what it is."""
    package = ROOT / "src" / "spirl"
    lines = []
    for layer in (package / name for name in LAYERS):
        lines.append(f"- **`{layer.name}`**")
        for path in sorted(layer.rglob("*.py")):
            if path.name == "__init__.py" and path.parent == layer:
                continue
            name = path.relative_to(layer).with_suffix("").as_posix().replace("/__init__", "")
            lines.append(f"  - `{name}`: {first_sentence(path)}")
    return "\n".join(lines) + "\n"


DOC = ROOT / "docs" / "architecture.md"
BLOCKS = {"diagram": lambda: f"```mermaid\n{mermaid()}```\n", "modules": module_index}


def with_generated(text: str) -> str:
    """A document's text with each `<!-- NAME:start -->` ... `<!-- NAME:end -->` block made anew."""
    for name, make in BLOCKS.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        head, sep, rest = text.partition(start)
        _, sep2, tail = rest.partition(end)
        if not (sep and sep2):
            raise ValueError(f"the document has no {start} ... {end} block")
        text = f"{head}{start}\n{make()}{end}{tail}"
    return text


if __name__ == "__main__":  # python src/spirl/workflow/diagram.py [--write]: print it, or update docs/architecture.md
    import sys

    if sys.argv[1:] == ["--write"]:
        DOC.write_text(with_generated(DOC.read_text()))
    else:
        print(mermaid(), end="")
