"""Per-image figures for the report: the image with its lung contour, then one heat map per attribution method."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FLAT = 1e-3  # a map whose positive part varies by less than this share of its largest magnitude is flat


def panel_titles(maps: dict[str, np.ndarray], lungs: np.ndarray | None, lungs_estimated: bool = False) -> list[str]:
    """The panel titles: "image (lungs)" only when a lung contour is drawn; a method's map that is flat (its
    positive part near-constant, e.g. Grad-CAM on a 1x1 last stage) is titled "<method> (flat map)"."""
    drawn = lungs is not None and bool(lungs.any())
    contour = ("lungs (estimated)" if lungs_estimated else "lungs") if drawn else "no lung mask"
    titles = [f"image ({contour})"]
    for name, attr in maps.items():
        positive = np.clip(np.asarray(attr, dtype=float), 0, None)
        flat = float(np.ptp(positive)) <= FLAT * max(float(np.abs(attr).max()), 1e-12)
        titles.append(name.replace("_", " ") + (" (flat map)" if flat else ""))
    return titles


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def write_overlay(path: str | Path, image: np.ndarray, maps: dict[str, np.ndarray], lungs: np.ndarray | None,
                  title: str = "", lungs_estimated: bool = False) -> Path:
    """PNG at ``path`` (written atomically). Heat maps show A+ scaled to its own maximum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.stage import atomic_path

    panels = 1 + len(maps)
    fig, axes = plt.subplots(1, panels, figsize=(2.2 * panels, 2.5), squeeze=False)
    axes = axes[0]
    titles = panel_titles(maps, lungs, lungs_estimated)
    for ax, title_text, attr in zip(axes, titles, [None, *maps.values()], strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if attr is not None:
            pos = np.clip(attr, 0, None)
            peak = pos.max()
            ax.imshow(pos / peak if peak > 0 else pos, cmap="inferno", alpha=0.55, vmin=0, vmax=1,
                      interpolation="bilinear")
        if lungs is not None and lungs.any():
            ax.contour(lungs.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(title_text, fontsize=7)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=7)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.80, wspace=0.05)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path
