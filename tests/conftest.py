"""Suite-wide settings for running the tests on several workers (`make test`: pytest-xdist, one worker per core).

- Each worker gets its share of the cores for torch's intra-op threads: tests that train in-process would
  otherwise start one thread per core in every worker, and the oversubscribed threads spin against each other.
- The longest test files run first, so `--dist loadfile` hands them to different workers at the start instead
  of leaving one of them alone at the end. The list is ordered by measured duration (2-core CPU, serial run);
  every other file keeps pytest's order.
- the `load_bench` fixture imports a bench/ script as a module (the benchmarks are scripts, not a package).
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import pytest
import torch

from spirl.params import REPO_ROOT


def _import_bench(name: str) -> ModuleType:
    """bench/<name>.py imported as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_bench():
    """A function importing bench/<name>.py as a module (the benchmarks are scripts, not a package)."""
    return _import_bench

LONGEST_FIRST = (
    "integration/test_smoke_dag.py",  # ~280 s: the whole DAG with Snakemake and with DVC (480 s before its copy held
    #                                   the smoke profile's dvc.yaml alone and DVC parsed YAML with ruamel's C loader)
    "integration/test_slurm.py",  # ~190 s: a one-node SLURM cluster
    "integration/test_learning.py",  # ~145 s: two agents learn a cue task in-process
    "integration/test_train.py",  # ~120 s: training runs as subprocesses
    "integration/test_multiseed.py",
)


def _rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)), len(LONGEST_FIRST))


def pytest_configure(config: pytest.Config) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the order inside a file and among the other files is unchanged
