"""Per-image figures for the report: the image with its lung contour, then one heat map per attribution method."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
    contour_label = "lungs (estimated)" if lungs_estimated else "lungs"
    for ax, (name, attr) in zip(axes, [("image", None), *maps.items()], strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if attr is not None:
            pos = np.clip(attr, 0, None)
            peak = pos.max()
            ax.imshow(pos / peak if peak > 0 else pos, cmap="inferno", alpha=0.55, vmin=0, vmax=1,
                      interpolation="bilinear")
        if lungs is not None and lungs.any():
            ax.contour(lungs.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(name.replace("_", " ") if attr is not None else f"image ({contour_label})", fontsize=7)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=7)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.80, wspace=0.05)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path
