"""The package's shape (docs/architecture.md): layers import only downwards, modules stay small, the import graph
that gives each stage its code dependencies is right."""

from __future__ import annotations

from pathlib import Path

import pytest

from spirl.workflow import imports as I
from spirl.workflow.stages import STAGES

LAYERS = I.LAYERS  # most basic first; a module may import from its own layer and the ones before it
MAX_LINES = 400
PACKAGE = I.SRC / "spirl"


def layer_of(module: str) -> int:
    """The index of a spirl module's layer (spirl.saliency.mae -> 3); the top package itself is below all."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module} lies outside the layers {LAYERS}: put it in one (docs/architecture.md)")
    return LAYERS.index(parts[1])


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_subpackage_is_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)
    assert [p.name for p in PACKAGE.glob("*.py")] == ["__init__.py"]  # no module outside a layer


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_a_module_imports_nothing_from_a_layer_above_its_own(path):
    own = layer_of(I.module_name(path))
    upward = sorted(m for m in I.direct_imports(path) if layer_of(m) > own)
    assert not upward, f"{I.module_name(path)} (layer {LAYERS[own]}) imports from above: {upward}"


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check itself: a module of `envs` importing the agents would be caught (also inside a function)."""
    fake = tmp_path / "bad.py"
    fake.write_text("def f():\n    from spirl.agents.replay import PrioritizedReplay\n    return PrioritizedReplay\n")
    found = I.direct_imports(fake)
    assert {"spirl", "spirl.agents", "spirl.agents.replay"} <= found
    assert max(layer_of(m) for m in found) > LAYERS.index("envs")


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_is_over_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines; split it along its concerns"


def test_a_stage_depends_on_exactly_the_modules_its_script_runs():
    """Frame collection, worked out by hand from the imports: the wrapper, the collector, their utilities, the
    parameter model, and each package's __init__ Python executes on the way."""
    assert STAGES["collect"].code == (
        "src/collect_frames.py", "src/spirl/__init__.py", "src/spirl/common/__init__.py", "src/spirl/common/cli.py",
        "src/spirl/common/io.py", "src/spirl/common/runinfo.py", "src/spirl/common/seeding.py",
        "src/spirl/envs/__init__.py", "src/spirl/envs/ale.py", "src/spirl/envs/atari.py", "src/spirl/envs/collect.py",
        *sorted(p.relative_to(I.ROOT).as_posix() for p in (PACKAGE / "params").glob("*.py")))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_code_dependencies_are_files_of_the_repository(name):
    code = STAGES[name].code
    assert code[0] == STAGES[name].script and len(set(code)) == len(code)
    assert all((I.ROOT / f).is_file() for f in code)
