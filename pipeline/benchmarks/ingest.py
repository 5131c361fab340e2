"""`cxr-fishr bench ingest`: ingest throughput on radiograph-size files against bare decoding with as many workers.

Input (rendered untimed into a temporary folder): the demo cohort's five site styles (explicit/implicit VR little
endian and RLE Lossless, 10/12/14-bit, MONOCHROME1/2) as DICOMs of 2,048-2,500 pixels a side (a synth render at
256 px, enlarged with bilinear interpolation plus quantum noise, so that RLE compresses as it does on real
radiographs), and 16-bit and 8-bit greyscale PNGs of the same size. ``--quick``: 6 files of 512 px, one round.

Timed, in interleaved rounds (a shared machine drifts, so each round runs both loops in turn): bare decoding
(``pydicom.dcmread(f).pixel_array``, ``np.asarray(Image.open(f))``) in a process pool of ``workers`` processes,
and a full ingest (``configs/ingest/dicom_folder.yaml``, cache 224 px) with the same number of workers. The ratio
bare/ingest is reported per round (its range is the figure to quote on a busy machine) with the CPU time per image.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

TARGET_RATIO = 0.8
REPO = Path(__file__).resolve().parents[2]
# (rows, cols) of the enlarged files, in turn: square and portrait/landscape detector formats
SHAPES = ((2048, 2048), (2500, 2048), (2304, 2304), (2048, 2500), (2500, 2500))


def _bare(path: str) -> int:
    """Decode one file the plainest way the libraries offer; returns its row count."""
    if path.endswith(".png"):
        from PIL import Image

        with Image.open(path) as image:
            return int(np.asarray(image).shape[0])
    import pydicom

    return int(pydicom.dcmread(path).pixel_array.shape[0])


def _enlarge(job: tuple[str, str, tuple[int, int], int]) -> str:
    """A synth DICOM enlarged to ``shape`` (bilinear + Gaussian noise of 0.4% of the range), same header and
    transfer syntax; as a PNG (16-bit for an odd seed, 8-bit otherwise) when ``target`` ends in .png."""
    import pydicom
    from PIL import Image
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    source, target, shape, seed = job
    ds = pydicom.dcmread(source)
    top = (1 << int(ds.BitsStored)) - 1
    small = ds.pixel_array.astype(np.float32)
    big = np.asarray(Image.fromarray(small, "F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    noisy = big + np.random.default_rng(seed).normal(0.0, 0.004 * top, shape).astype(np.float32)
    pixels = np.clip(np.round(noisy), 0, top).astype(np.uint16)
    if target.endswith(".png"):
        image = pixels << np.uint16(16 - int(ds.BitsStored)) if seed % 2 else (pixels >> (int(ds.BitsStored) - 8))
        Image.fromarray(image if seed % 2 else image.astype(np.uint8)).save(target)
        return target
    syntax = ds.file_meta.TransferSyntaxUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # set_pixel_data needs an uncompressed syntax
    ds.set_pixel_data(pixels, photometric_interpretation=ds.PhotometricInterpretation, bits_stored=int(ds.BitsStored),
                      generate_instance_uid=False)
    if syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(target, enforce_file_format=True)
    return target


def make_input(root: Path, *, n_dicom: int, n_png: int, shapes: tuple[tuple[int, int], ...], workers: int) -> list[str]:
    """Render the benchmark files into ``root/source`` (one folder per site, PNGs in ``png``); returns their paths."""
    from pipeline.synth import run as synth

    cohort = synth(config=REPO / "configs" / "cohort" / "demo.yaml", out=root / "cohort",
                   n_per_site=math.ceil((n_dicom + n_png) / 5), size=256, workers=workers, progress=False).out
    by_site = sorted(sorted(site.glob("*.dcm")) for site in (Path(cohort) / "dicom").iterdir() if site.is_dir())
    ordered = [files[i] for i in range(max(map(len, by_site))) for files in by_site if i < len(files)]  # round-robin
    jobs = []
    for i, small in enumerate(ordered[: n_dicom + n_png]):
        folder = root / "source" / ("png" if i >= n_dicom else small.parent.name)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{small.stem}.png" if i >= n_dicom else small.name
        jobs.append((str(small), str(folder / name), shapes[i % len(shapes)], i))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        files = list(pool.map(_enlarge, jobs))
    shutil.rmtree(root / "cohort")
    return files


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the pool workers), user + system."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rounds(loops: dict, repeats: int, setup: dict) -> dict[str, list[tuple[float, float]]]:
    """name -> [(wall s, CPU s) per round]; each round runs every loop once, in turn (``setup[name]`` untimed)."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, fn in loops.items():
            if name in setup:
                setup[name]()
            start, cpu = time.perf_counter(), _cpu_seconds()
            fn()
            times[name].append((time.perf_counter() - start, _cpu_seconds() - cpu))
    return times


def run(quick: bool = False) -> dict:
    import monai.transforms  # noqa: F401  imports are not part of the measured time
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import pydicom  # noqa: F401
    import torch

    from pipeline.ingest import run as ingest

    torch.set_num_threads(1)
    n_dicom, n_png, repeats, workers = (5, 1, 1, 2) if quick else (30, 6, 3, 2)
    shapes = ((512, 512), (512, 448)) if quick else SHAPES
    root = Path(tempfile.mkdtemp(prefix="cxr-fishr-bench-ingest-"))
    try:
        files = make_input(root, n_dicom=n_dicom, n_png=n_png, shapes=shapes, workers=workers)
        config = REPO / "configs" / "ingest" / "dicom_folder.yaml"
        kept: list[int] = []

        def bare_pool() -> None:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                list(pool.map(_bare, files, chunksize=1))

        def remove_outputs() -> None:
            shutil.rmtree(root / "ingest", ignore_errors=True)  # no cache reuse: every run decodes everything

        def full_ingest() -> None:
            result = ingest(source=root / "source", out=root / "ingest", config=config, size=224, workers=workers,
                            progress=False)
            kept.append(result.summary.n_images)

        bare_pool()  # warm the page cache and the imports
        times = _rounds({"bare": bare_pool, "ingest": full_ingest}, repeats, setup={"ingest": remove_outputs})
        ratios = [b[0] / i[0] for b, i in zip(times["bare"], times["ingest"], strict=True)]
        cpu_ratios = [b[1] / i[1] for b, i in zip(times["bare"], times["ingest"], strict=True)]
        n = len(files)
        return {
            "images": n, "dicom": n_dicom, "png": n_png, "shapes": [list(s) for s in shapes], "size_out": 224,
            "workers": workers, "rounds": repeats, "ingested": kept,
            "mean_megapixels": round(sum(r * c for r, c in shapes) / len(shapes) / 1e6, 2),
            "bare_pool_images_per_s": [round(n / t, 2) for t, _ in times["bare"]],
            "ingest_images_per_s": [round(n / t, 2) for t, _ in times["ingest"]],
            "ratio_vs_bare_pool": [round(r, 3) for r in ratios],
            "ratio_vs_bare_pool_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "ratio_from_cpu_time": [round(r, 3) for r in cpu_ratios],
            "bare_cpu_ms_per_image": [round(1000 * c / n, 1) for _, c in times["bare"]],
            "ingest_cpu_ms_per_image": [round(1000 * c / n, 1) for _, c in times["ingest"]],
            "target_ratio": TARGET_RATIO,
            "ratio_median": round(statistics.median(ratios), 3),
            "meets_target": bool(statistics.median(ratios) >= TARGET_RATIO),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "cpu_count": os.cpu_count(),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
