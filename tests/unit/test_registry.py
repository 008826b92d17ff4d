"""The scorer registry (spirl.saliency.registry, SPEC §13): one declaration per scorer, known by name nowhere else;
its implementations, the models a job loads for it, and the random scorer's one seed key."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spirl.common.seeding import derive_seed
from spirl.params import REPO_ROOT, SCORERS, ConfigError, load_params, replace
from spirl.saliency import registry
from spirl.saliency.error_maps import error_map_settings
from spirl.saliency.pretrain import save_model, untrained_mae
from spirl.saliency.registry import COMPUTATIONS, SPECS, ScorerSpec, spec
from spirl.saliency.scorers import IMPLEMENTATIONS, build_scorer
from spirl.saliency.scorers.loading import load_scorer_models, scorer_models
from spirl.saliency.wu.model import WuAttention
from spirl.saliency.wu.training import save_model as save_wu

SRC = REPO_ROOT / "src"
REGISTRY = SRC / "spirl" / "saliency" / "registry.py"  # the registry module(s): the only ones that name scorers
ALLOWED_VALUES = SRC / "spirl" / "params"  # layer 0 lists saliency.scorer's allowed values; the registry checks them
NOT_A_SCORER = {  # the same word meaning something else: the Atari random agent's reference score (SPEC §10)
    (SRC / "make_figures.py", "random"), (SRC / "spirl" / "reporting" / "tables.py", "random")}


def test_every_scorer_is_declared_once_and_the_paper_is_mae_surround():
    assert tuple(SPECS) == SCORERS == ("mae_surround", "mae_untrained", "frame_diff", "random", "wu_mask")
    assert registry.PAPER == "mae_surround" and [s.name for s in SPECS.values() if s.paper] == ["mae_surround"]
    assert all(spec(name) is SPECS[name] and SPECS[name].name == name for name in SCORERS)
    with pytest.raises(ValueError, match=r"criteria\.scorers must be one of \('mae_surround'.*'wu_mask'\), got 'mae'"):
        spec("mae", "criteria.scorers")
    with pytest.raises(ValueError, match=r"saliency\.scorer must be one of .* got None"):
        spec(None)


def test_what_each_scorer_declares():
    needs = {name: (s.scores_with, s.computes, s.needs_wu, s.needs_untrained_mae, s.uses_mae_error_map,
                    s.previous_frame, s.seeded) for name, s in SPECS.items()}
    assert needs == {
        "mae_surround": ("trained_mae", "mae_error", False, False, True, False, False),
        "mae_untrained": ("untrained_mae", "mae_error", False, True, True, False, False),
        "frame_diff": (None, "frame_difference", False, False, False, True, False),
        "random": (None, "uniform_noise", False, False, False, False, True),
        "wu_mask": ("wu", "wu_attention", True, False, False, False, False),
    }
    with pytest.raises(ValueError, match=r"ScorerSpec 'x': scores_with must be one of .*got 'mae'"):
        ScorerSpec("x", scores_with="mae", computes="mae_error")
    with pytest.raises(ValueError, match=r"ScorerSpec 'x': computes must be one of .*got 'edges'"):
        ScorerSpec("x", scores_with=None, computes="edges")


def test_every_computation_has_one_implementation():
    assert set(IMPLEMENTATIONS) == set(COMPUTATIONS)
    assert all(cls.computes == key for key, cls in IMPLEMENTATIONS.items())


def test_the_random_scorer_has_one_seed_key():
    """The stream form's draws (training runs with the random scorer) depend on this key: it must not change."""
    assert registry.SEED_KEY == "saliency.random"
    assert registry.archive_seed(0, "Seaquest") == derive_seed(0, "saliency.random", "Seaquest")
    assert registry.archive_seed(0, "Seaquest") != registry.archive_seed(1, "Seaquest") != \
        registry.archive_seed(0, "Frostbite")


def test_the_registry_imports_no_torch():
    """The job plan reads the declarations; planning must not import torch."""
    code = "import sys, spirl.saliency.registry; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def scorer_literals(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every string constant in a Python file that equals a scorer name, docstrings excluded."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in SCORERS
                  and id(node) not in docstrings)


def test_no_module_or_script_names_a_scorer_outside_the_registry():
    """Scripts and modules ask the registry (spec(name).needs_wu, registry.PAPER, ...) instead of comparing a scorer
    name with a literal: a scorer is added, renamed or given a new input in one place."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == REGISTRY or ALLOWED_VALUES in path.parents:
            continue
        found += [f"{path.relative_to(REPO_ROOT)}:{line}: {name!r}" for line, name in scorer_literals(path)
                  if (path, name) not in NOT_A_SCORER]
    assert found == [], "scorer names outside spirl.saliency.registry:\n" + "\n".join(found)


def test_the_scan_finds_a_planted_literal(tmp_path):
    planted = tmp_path / "script.py"
    planted.write_text('"""Uses wu_mask (a docstring: fine)."""\n\n\ndef f(name):\n    """frame_diff too."""\n'
                       '    if name == "wu_mask":\n        return {"random": 1}\n    return f"{name}frame_diff"\n')
    assert scorer_literals(planted) == [(6, "wu_mask"), (7, "random"), (8, "frame_diff")]  # an f-string's part too


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A 40-px game MAE and a Wu mask on disk, and the smoke profile's params."""
    tmp = tmp_path_factory.mktemp("models")
    params = load_params([REPO_ROOT / "params.yaml", REPO_ROOT / "conf" / "smoke.yaml"])
    mae = untrained_mae(params.mae, "MsPacman", params.atari.frame_size_px)  # stands in for a trained MAE
    save_model(mae, tmp / "mae.npz")
    save_wu(WuAttention(torch.Generator().manual_seed(3)), tmp / "wu.npz")
    return {"params": params, "mae": tmp / "mae.npz", "wu": tmp / "wu.npz"}


def test_load_scorer_models_loads_what_a_scorer_declares(job):
    params, frames = job["params"], np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    loaded = {name: load_scorer_models(SPECS[name], params, "Seaquest", job["mae"], job["wu"], "cpu")
              for name in SCORERS}
    for name, models in loaded.items():
        assert models.settings == error_map_settings(params, models.mae) and models.incremental is True
        assert (models.untrained is not None) == (name == "mae_untrained")
        assert (models.wu is not None) == (name == "wu_mask")
        assert build_scorer(SPECS[name], models).frames(frames, frames, None, torch.Generator()).shape == (2, 25)
    expected = untrained_mae(params.mae, "Seaquest", 40)  # the game's init seed, never trained
    got = loaded["mae_untrained"].untrained
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), expected.state_dict().values(),
                                                 strict=True))
    saved = WuAttention(torch.Generator().manual_seed(3)).state_dict()
    assert all(torch.equal(loaded["wu_mask"].wu.state_dict()[k], v) for k, v in saved.items())
    off = replace(params, saliency=replace(params.saliency, incremental=False))
    assert scorer_models(SPECS["frame_diff"], off, "Seaquest", loaded["frame_diff"].mae).incremental is False


def test_a_missing_input_is_named(job):
    params = job["params"]
    with pytest.raises(ConfigError, match=r"scorer 'wu_mask' scores with the game's trained Wu mask: --in-wu"):
        load_scorer_models(SPECS["wu_mask"], params, "Seaquest", job["mae"], None, "cpu")
    with pytest.raises(ConfigError, match=r"scorer 'frame_diff' needs the game's trained MAE.*--in-model"):
        load_scorer_models(SPECS["frame_diff"], params, "Seaquest", None, None, "cpu")
    models = load_scorer_models(SPECS["frame_diff"], params, "Seaquest", job["mae"], None, "cpu")
    assert models.wu is None  # the Wu mask is read only for a scorer that declares it
