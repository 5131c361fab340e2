"""`cxr-fishr bench synth`: images per second of the demo cohort at 256x256 on every core (DICOM + masks written)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TARGET_IMAGES_PER_SECOND = 40.0  # on 2 cores: the 2,700-image demo cohort in ~1 minute, under the 2-minute budget


def run(quick: bool = False) -> dict:
    from pipeline.synth import run as synth_run
    from pipeline.synth.lungs import lung_library

    lung_library()  # one-off per machine (cached on disk): not part of the throughput
    config = Path(__file__).resolve().parents[2] / "configs" / "cohort" / "demo.yaml"
    n_per_site = 8 if quick else 100
    workers = os.cpu_count() or 1
    before = _cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="cxr-fishr-bench-synth-") as tmp:
        result = synth_run(config=config, out=tmp, n_per_site=n_per_site, size=256, workers=workers, progress=False)
    cpu = _cpu_seconds() - before
    rate = result.images_per_second
    return {
        "images": result.n_rendered,
        "size": 256,
        "workers": workers,
        "seconds": round(result.seconds, 3),
        "images_per_second": round(rate, 1),
        "target_images_per_second": TARGET_IMAGES_PER_SECOND,
        "meets_target": bool(rate >= TARGET_IMAGES_PER_SECOND),
        "demo_cohort_seconds_estimate": round(2700 / rate, 1) if rate > 0 else None,
        # CPU time per image (this process and its workers): what the rate would be on idle cores, since the
        # wall-clock rate drops when other jobs share the machine
        "cpu_ms_per_image": round(1000 * cpu / max(1, result.n_rendered), 1),
        "idle_cores_images_per_second_estimate": round(workers * result.n_rendered / cpu, 1) if cpu > 0 else None,
    }


def _cpu_seconds() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
