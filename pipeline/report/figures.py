"""Matplotlib figures written as PNG files beside index.html (the Agg backend: no display, no network).

Each function takes plain data (names and numbers), not stage JSON, so it can be tested on small inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

PALETTE = ("#3b6fb6", "#d9822b", "#3f9c5a", "#b5443d", "#7d5ba6", "#8c6d31", "#d36fb0", "#6b6b6b")
DPI = 110
REFERENCE_STYLES = (("--", "#111"), (":", "#9a6b00"), ("-.", "#555"))  # (line style, colour) per reference series
REFERENCE_WORDS = ("dashed", "dotted brown", "dash-dot grey")  # REFERENCE_STYLES as a caption names them


def pyplot():
    """matplotlib.pyplot on the Agg backend with the report's style (every report figure draws through it)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 10,
        "axes.titleweight": "bold", "legend.frameon": False, "figure.dpi": DPI,
    })
    return plt


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (no half-written image beside index.html), then close it."""
    from pipeline.stage import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return path


def grouped_bars(
    path: Path,
    *,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    intervals: Mapping[str, Sequence[tuple[float, float] | None]] | None = None,
    ylabel: str,
    title: str = "",
    reference: Mapping[str, Sequence[float | None]] | None = None,
    ylim: tuple[float, float] | None = (0.0, 1.0),
    highlight: str | None = None,
    chance: float | None = None,
    width_in: float = 7.5,
) -> Path:
    """One bar per (group, series); optional error bars; reference values as dashed ticks (e.g. a baseline)."""
    panel = {"groups": groups, "series": series, "intervals": intervals, "ylabel": ylabel, "title": title,
             "reference": reference, "ylim": ylim, "highlight": highlight, "chance": chance}
    return bar_panels(path, [panel], width_in=width_in)


def bar_panels(path: Path, panels: Sequence[Mapping], *, width_in: float = 7.5, height_in: float = 3.2) -> Path:
    """Several grouped-bar panels side by side sharing one legend (series keep their colour across panels)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(width_in, height_in), squeeze=False)
    colours: dict[str, str] = {}
    for ax, panel in zip(axes[0], panels, strict=False):
        _draw_bars(ax, colours=colours, **panel)
    handles, labels = {}, []
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=False):
            if label not in handles:
                handles[label] = h
                labels.append(label)
    fig.legend([handles[k] for k in labels], labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8,
               frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def _draw_bars(ax, *, colours: dict[str, str], groups, series, ylabel, intervals=None, title="", reference=None,
               ylim=(0.0, 1.0), highlight=None, chance=None) -> None:
    names = list(series)
    n = max(1, len(names))
    bar_w = 0.8 / n
    for i, name in enumerate(names):
        colour = colours.setdefault(name, PALETTE[len(colours) % len(PALETTE)])
        values = [v if _finite(v) else 0.0 for v in series[name]]
        xs = [g + (i - (n - 1) / 2) * bar_w for g in range(len(groups))]
        bars = ax.bar(xs, values, bar_w * 0.92, label=name, color=colour)
        for bar, raw in zip(bars, series[name], strict=False):
            if not _finite(raw):
                bar.set_alpha(0.0)
        for x, v, span in zip(xs, series[name], (intervals or {}).get(name) or [], strict=False):
            if span and _finite(v) and all(_finite(s) for s in span):
                ax.errorbar(x, v, yerr=[[max(0.0, v - span[0])], [max(0.0, span[1] - v)]], color="#222",
                            capsize=2, lw=0.9)
    for k, (label, values) in enumerate((reference or {}).items()):
        drawn = False
        style = REFERENCE_STYLES[k % len(REFERENCE_STYLES)]  # each reference series keeps its own line style
        for g, v in enumerate(values):
            if _finite(v):
                ax.hlines(v, g - 0.45, g + 0.45, colors=style[1], linestyles=style[0], lw=1.4,
                          label=None if drawn else label)
                drawn = True
    if chance is not None:
        ax.axhline(chance, color="#999", lw=0.8, ls=":")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    if highlight in groups:
        tick = ax.get_xticklabels()[list(groups).index(highlight)]
        tick.set_color("#b5443d")
        tick.set_fontweight("bold")
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, loc="left")
    ax.grid(axis="y", color="#e5e5e5", lw=0.6)
    ax.set_axisbelow(True)


def distributions(path: Path, *, samples: Mapping[str, Sequence[float]], ylabel: str, title: str = "") -> Path:
    """Box plots with the points jittered over them: one per group (e.g. age per site)."""
    import numpy as np

    plt = pyplot()
    names = [k for k, v in samples.items() if len(v)]
    fig, ax = plt.subplots(figsize=(7.5, 2.8))
    data = [np.asarray(samples[k], dtype=float) for k in names]
    if data:
        ax.boxplot(data, showfliers=False, widths=0.5, medianprops={"color": "#b5443d"})
        rng = np.random.default_rng(0)
        for i, values in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=4, alpha=0.35,
                       color=PALETTE[(i - 1) % len(PALETTE)], lw=0)
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels(names)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, loc="left")
    ax.grid(axis="y", color="#e5e5e5", lw=0.6)
    return save_figure(fig, path)
