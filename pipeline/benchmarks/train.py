"""`cxr-fishr bench train`: seconds per step of ERM and Fishr (same backbone, resolution and batch: 3 domains x 32
at 128 px), their ratio (target <= 1.10), and a bare PyTorch loop over in-memory tensors (same model and batch) to
show what the data pipeline costs (target: loader overhead <= 10%).

The three loops are interleaved step by step so a busy machine slows them alike; figures are medians over the
measured steps after warm-up. Data: the demo cohort (``configs/cohort/demo.yaml``, 4 batches' worth of images per
hospital) rendered by the synth stage and read by the ingest stage (``configs/ingest/synth_demo.yaml``) at the
benchmark's resolution, in a temporary folder: the files train reads in a real run (about 10 s at full size, outside
the timed steps). The three training hospitals hold 80% of their images in split train (the config's holdout 0.2).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _config(algorithm: str, size: int, batch: int):
    from pipeline.train import load_train_config

    path = REPO / "configs" / "train" / f"{algorithm}.yaml"
    overrides: dict[str, Any] = {"device": "cpu"}
    cfg = load_train_config(path if path.is_file() else {"algorithm": algorithm}, overrides)
    hparams = {**cfg.hparams, "batch_size": batch}
    if algorithm == "fishr":
        hparams["penalty_anneal_iters"] = 0  # time the full penalty, not the ERM warm-up
    return cfg.model_copy(update={"hparams": hparams})


def _ingest(root: Path, *, n_per_site: int, size: int) -> Path:
    """The demo cohort at ``size`` px, ``n_per_site`` images per hospital, synthesised and ingested under ``root``;
    returns the ingest directory."""
    from pipeline.ingest import run as ingest_run
    from pipeline.synth import run as synth_run

    cohort = synth_run(config=REPO / "configs" / "cohort" / "demo.yaml", out=root / "synth", n_per_site=n_per_site,
                       size=size, seed=0, progress=False)
    return ingest_run(source=cohort.out / "dicom", out=root / "ingest", metadata=cohort.out / "labels.csv",
                      config=REPO / "configs" / "ingest" / "synth_demo.yaml", size=size, progress=False).out


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    from pipeline.algorithms import build, list_algorithms
    from pipeline.models import build_network
    from pipeline.train.distributed import dist_info
    from pipeline.train.domains import build_train_data

    size, batch, warmup, measured = (64, 8, 2, 5) if quick else (128, 32, 3, 20)
    algorithms = ["erm"] + (["fishr"] if "fishr" in list_algorithms() else [])
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        ingest = _ingest(Path(tmp), n_per_site=4 * batch, size=size)
        loops: dict[str, Any] = {}
        for name in algorithms:
            cfg = _config(name, size, batch)
            torch.manual_seed(0)
            net = build_network(cfg.model)
            data = build_train_data(ingest, cfg, batch_size=batch, dist=dist_info())
            loops[name] = (build(name, net.featurizer, net.classifier, 3, cfg.hparams), data.loaders)
        torch.manual_seed(0)
        erm_cfg = _config("erm", size, batch)
        net = build_network(erm_cfg.model)
        bare = build("erm", net.featurizer, net.classifier, 3, erm_cfg.hparams)
        tensors = [(torch.rand(batch, 1, size, size), torch.randint(0, 2, (batch,))) for _ in range(3)]

        times: dict[str, list[float]] = {name: [] for name in [*algorithms, "bare", "loader"]}
        for step in range(warmup + measured):
            for name, (algorithm, loaders) in loops.items():
                t0 = time.perf_counter()
                minibatches = loaders.next()
                t1 = time.perf_counter()
                algorithm.update(minibatches)
                t2 = time.perf_counter()
                if step >= warmup:
                    times[name].append(t2 - t0)
                    if name == "erm":
                        times["loader"].append(t1 - t0)
            t0 = time.perf_counter()
            bare.update(tensors)
            if step >= warmup:
                times["bare"].append(time.perf_counter() - t0)

    med = {name: statistics.median(values) for name, values in times.items()}
    result: dict[str, Any] = {
        "device": "cpu", "threads": torch.get_num_threads(), "backbone": erm_cfg.model.backbone,
        "norm_layer": erm_cfg.model.norm_layer, "image_size": size, "batch": f"3x{batch}",
        "augment": erm_cfg.augment.enabled, "warmup_steps": warmup, "measured_steps": measured,
        "erm_seconds_per_step": round(med["erm"], 4),
        "bare_seconds_per_step": round(med["bare"], 4),
        "loader_seconds_per_step": round(med["loader"], 4),
        "loader_overhead": round(med["loader"] / med["bare"], 4),
        "target_loader_overhead": 0.10,
    }
    if "fishr" in med:
        result.update({"fishr_seconds_per_step": round(med["fishr"], 4),
                       "fishr_over_erm": round(med["fishr"] / med["erm"], 4), "target_fishr_over_erm": 1.10})
    return result
