import numpy as np
from PIL import Image

from pipeline.report import figures


def _ink(path):
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    return (pixels < 200).mean()


def test_grouped_bars_with_missing_values_and_intervals_writes_nonblank_png(tmp_path):
    path = figures.grouped_bars(
        tmp_path / "bars.png", groups=["north", "harbour"], series={"a": [0.9, None], "b": [0.7, 0.4]},
        intervals={"b": [(0.6, 0.8), None]}, reference={"baseline": [0.5, float("nan")]}, ylabel="accuracy",
        chance=0.5)
    assert path.is_file() and 0.005 < _ink(path) < 0.5


def test_bar_panels_share_one_legend_and_write_png(tmp_path):
    panel = {"groups": ["x", "y"], "series": {"m1": [0.1, 0.2], "m2": [0.3, 0.4]}, "ylabel": "share"}
    path = figures.bar_panels(tmp_path / "panels.png", [panel, {**panel, "title": "second"}])
    assert Image.open(path).size[0] > Image.open(path).size[1]


def test_distributions_empty_group_is_skipped(tmp_path):
    path = figures.distributions(tmp_path / "ages.png", samples={"north": [30.0, 50.0, 70.0], "east": []},
                                 ylabel="age")
    assert _ink(path) > 0.005
