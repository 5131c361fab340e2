"""A contact sheet of a rendered cohort, read back from its DICOM files as a viewer would display them.

``python -m pipeline.synth.contact_sheet OUT docs/images/contact_sheet.png`` picks, per site, images that cover
both positions with and without a visible opacity (16 in all), and labels each tile.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np


def display_array(path: Path) -> np.ndarray:
    """Decode a DICOM to [0, 1] display values: modality LUT, window, then MONOCHROME1 inversion."""
    import pydicom

    ds = pydicom.dcmread(path)
    values = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    shown = np.clip((values - (centre - width / 2)) / width, 0.0, 1.0)
    return 1.0 - shown if ds.PhotometricInterpretation == "MONOCHROME1" else shown


def pick(truth: list[dict[str, str]], per_site: int = 16) -> list[dict[str, str]]:
    sites = list(dict.fromkeys(r["site"] for r in truth))
    wanted = [(pos, op) for pos in ("erect", "supine") for op in ("0", "1")]
    chosen: list[dict[str, str]] = []
    slot = 0
    while len(chosen) < per_site and slot < 4 * len(sites):
        site, (pos, op) = sites[slot % len(sites)], wanted[slot % 4]
        slot += 1
        for row in truth:
            if row["site"] == site and row["position"] == pos and row["opacity_present"] == op and row not in chosen:
                chosen.append(row)
                break
    return chosen[:per_site]


def contact_sheet(cohort_dir: str | Path, target: str | Path, columns: int = 4, tile: int = 256) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    cohort_dir = Path(cohort_dir)
    with open(cohort_dir / "truth.csv", newline="", encoding="utf-8") as handle:
        rows = pick(list(csv.DictReader(handle)))
    sheet = Image.new("L", (columns * tile, -(-len(rows) // columns) * (tile + 18)), 255)
    font = ImageFont.load_default(size=12)
    draw = ImageDraw.Draw(sheet)
    for i, row in enumerate(rows):
        image = Image.fromarray((display_array(cohort_dir / row["path"]) * 255).astype(np.uint8)).resize((tile, tile))
        x, y = (i % columns) * tile, (i // columns) * (tile + 18)
        sheet.paste(image, (x, y + 18))
        opacity = "opacity" if row["opacity_present"] == "1" else "clear"
        caption = f"{row['site']} {row['view']} {row['position']} {row['finding']} ({opacity}, {row['age_group']})"
        draw.text((x + 3, y + 2), caption, fill=0, font=font)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target)
    return target


if __name__ == "__main__":
    contact_sheet(sys.argv[1], sys.argv[2])
