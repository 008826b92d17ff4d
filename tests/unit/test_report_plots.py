"""Report figures: valid, byte-deterministic PNGs; one panel per game/metric; NaN and empty labels tolerated."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from spirl.reporting import figures as rpl

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = float("nan")


def _curve(offset: float, n_seeds: int = 3) -> dict:
    steps = [0, 25_000, 50_000, 100_000]
    mean = [offset + s / 1e4 for s in steps]
    return {"env_step": steps, "mean": mean, "low": [m - 1 for m in mean], "high": [m + 1 for m in mean],
            "n_seeds": n_seeds}


CURVES = {
    "Pong": {"SPIRL": _curve(0.0), "Rainbow": _curve(-2.0)},
    "Breakout": {"SPIRL": _curve(1.0), "Rainbow": _curve(0.5, 2)},
    "MsPacman": {"SPIRL": _curve(3.0)},
}
ESTIMATES = {
    "SPIRL": {"Median": (0.4, 0.3, 0.5), "IQM": (0.35, 0.2, 0.5), "Mean": (0.6, 0.4, 0.9),
              "Optimality gap": (0.7, 0.6, 0.8)},
    "Rainbow": {"Median": (0.2, 0.1, 0.3), "IQM": (0.25, 0.1, 0.4), "Mean": (0.3, 0.2, 0.5),
                "Optimality gap": (0.8, 0.7, 0.9)},
}
TAU = list(np.linspace(0.0, 2.0, 9))
PROFILES = {
    "SPIRL": {"tau": TAU, "fraction": list(np.linspace(1, 0, 9)), "low": list(np.linspace(0.9, 0, 9)),
              "high": list(np.linspace(1, 0.1, 9))},
    "Rainbow": {"tau": TAU, "fraction": list(np.linspace(0.8, 0, 9)), "low": list(np.linspace(0.7, 0, 9)),
                "high": list(np.linspace(0.9, 0.05, 9))},
}
CASES = [
    (rpl.plot_learning_curves, (CURVES, "learning curves")),
    (rpl.plot_intervals, (ESTIMATES, "aggregates", "over 4 games only")),
    (rpl.plot_performance_profile, (PROFILES, "profile", "over 4 games only")),
]


@pytest.mark.parametrize(("plot", "args"), CASES, ids=["curves", "intervals", "profile"])
def test_png_is_valid_and_byte_deterministic(tmp_path, plot, args):
    data, *rest = args
    plot(data, tmp_path / "a.png", *rest)
    plot(data, tmp_path / "b.png", *rest)
    first = (tmp_path / "a.png").read_bytes()
    assert first[:8] == PNG_SIGNATURE
    assert first == (tmp_path / "b.png").read_bytes()


def test_one_panel_per_game_and_legend_counts():
    fig = rpl._build_learning_curves(CURVES, "t")
    try:
        assert len(fig.axes) == 3
        assert [ax.get_title() for ax in fig.axes] == ["Pong", "Breakout", "MsPacman"]
        legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
        assert legend == ["SPIRL (n=3)", "Rainbow (n=2)"]
    finally:
        plt.close(fig)


def test_one_panel_per_metric_in_given_order():
    fig = rpl._build_intervals(ESTIMATES, "t", "note")
    try:
        assert [ax.get_title() for ax in fig.axes] == ["Median", "IQM", "Mean", "Optimality gap"]
        assert fig.axes[0].get_xlabel() == "human-normalised score"
        assert any(t.get_text() == "note" for t in fig.texts)
    finally:
        plt.close(fig)


def test_nan_and_missing_labels_do_not_crash(tmp_path):
    curves = {"Pong": {"SPIRL": {**_curve(0.0), "mean": [NAN, 1.0, NAN, 2.0], "low": [NAN] * 4},
                       "Empty": {"env_step": [0, 1], "mean": [NAN, NAN], "low": [NAN, NAN], "high": [NAN, NAN],
                                 "n_seeds": 0}}}
    fig = rpl._build_learning_curves(curves, "t")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["SPIRL (n=3)", "Empty (no runs)"]
    plt.close(fig)
    rpl.plot_learning_curves(curves, tmp_path / "c.png", "t")

    estimates = {**ESTIMATES, "Empty": {m: (NAN, NAN, NAN) for m in ESTIMATES["SPIRL"]},
                 "Partial": {"Median": (0.1, NAN, NAN)}}
    fig = rpl._build_intervals(estimates, "t", "n")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["SPIRL", "Rainbow", "Empty (no runs)",
                                                                      "Partial"]
    plt.close(fig)
    rpl.plot_intervals(estimates, tmp_path / "i.png", "t", "n")

    profiles = {**PROFILES, "Empty": {"tau": TAU, "fraction": [NAN] * 9, "low": [NAN] * 9, "high": [NAN] * 9}}
    fig = rpl._build_performance_profile(profiles, "t", "n")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["SPIRL", "Rainbow", "Empty (no runs)"]
    plt.close(fig)
    rpl.plot_performance_profile(profiles, tmp_path / "p.png", "t", "n")
    for name in ("c.png", "i.png", "p.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE
