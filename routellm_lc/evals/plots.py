"""One plot per benchmark: quality against % strong calls, as RouteLLM draws it.

Uses matplotlib's object API with the Agg canvas directly, so no global pyplot state or
display backend is touched (safe inside servers, notebooks and tests).
"""

from __future__ import annotations

import os
from typing import Any


def plot_benchmark(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Draw every router's curve, the optimal curve and the strong/weak references."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, entry in result["routers"].items():
        xs = [p["strong_pct"] for p in entry["curve"]]
        ys = [p["quality"] for p in entry["curve"]]
        apgr = entry["apgr"]
        label = f"{name} (APGR {apgr:.3f})" if apgr is not None else name
        axes.plot(xs, ys, marker=".", linestyle="-", label=label)
    optimal = result["optimal"]
    axes.plot(
        [p["strong_pct"] for p in optimal["curve"]],
        [p["quality"] for p in optimal["curve"]],
        marker="x",
        linestyle="-",
        color="black",
        label=f"optimal (APGR {optimal['apgr']:.3f})" if optimal["apgr"] is not None else "optimal",
    )
    strong, weak = result["strong"], result["weak"]
    axes.axhline(strong["quality"], color="red", linestyle="--", label=f"{strong['model']}")
    axes.axhline(weak["quality"], color="grey", linestyle="--", label=f"{weak['model']}")
    axes.set_xlabel("Strong model calls (%)")
    axes.set_ylabel("Quality")
    axes.set_xlim(0, 100)
    axes.set_title(
        f"{result['benchmark']}: quality vs strong-model calls ({result['n_prompts']} prompts)"
    )
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
