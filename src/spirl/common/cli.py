"""What every stage script shares: the common options and logging to the job's log file."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def base_parser(description: str) -> argparse.ArgumentParser:
    """A parser with --params FILE [FILE ...] (merged in order) and --log FILE."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", nargs="+", required=True, type=Path,
                        help="params.yaml then a conf/<profile>.yaml overlay, merged in order")
    parser.add_argument("--log", type=Path, default=None, help="log file (also echoed to stderr)")
    return parser


def setup_logging(name: str, log_path: Path | None) -> logging.Logger:
    """A logger writing to stderr and, if given, to `log_path` (created, truncated)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logger.propagate = False
    return logger
