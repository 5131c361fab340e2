"""configs/study/fishr_gap/stage_a: one valid train config per cell of docs/study/fishr_gap.md's stage-A grid."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config, read_yaml
from pipeline.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
STAGE_A = ROOT / "configs" / "study" / "fishr_gap" / "stage_a"
ERM = ROOT / "configs" / "train" / "erm.yaml"

NORMS = {"layernorm": ("convnext_atto", "default", "keep"), "groupnorm": ("resnet18", "group", "keep"),
         "nofinalnorm": ("convnext_atto", "default", "identity")}
SCHEDULES = {"step0": (0, 400), "warmup-reset": (100, 500)}  # (penalty_anneal_iters, steps)
FISHR_LAMBDAS = (10.0, 100.0, 1000.0, 10000.0)
VREX_LAMBDAS = (1.0, 10.0, 100.0)


def _expected() -> dict[str, dict]:
    """File name -> (algorithm, norm, the hparams and steps the grid fixes for that cell)."""
    cells = {}
    for norm in NORMS:
        cells[f"{norm}-erm.yaml"] = {"algorithm": "erm", "norm": norm, "steps": 400, "hparams": {}}
        for schedule, (anneal, steps) in SCHEDULES.items():
            for lam in FISHR_LAMBDAS:
                cells[f"{norm}-fishr-{schedule}-lam{int(lam)}.yaml"] = {
                    "algorithm": "fishr", "norm": norm, "steps": steps,
                    "hparams": {"lam": lam, "penalty_anneal_iters": anneal, "ema": 0.95}}
        for lam in VREX_LAMBDAS:
            cells[f"{norm}-vrex-lam{int(lam)}.yaml"] = {
                "algorithm": "vrex", "norm": norm, "steps": 400,
                "hparams": {"vrex_lambda": lam, "vrex_penalty_anneal_iters": 40}}
    return cells


EXPECTED = _expected()


def test_stage_a_has_one_file_per_runnable_cell_of_the_grid():
    # 3 norms x (2 runnable schedules x 4 lambdas for Fishr + 3 lambdas for V-REx + ERM); the paper's schedule
    # (warm-up keeping Adam's moments, loss divided by lambda) has no train option yet: 12 Fishr runs missing
    assert sorted(p.name for p in STAGE_A.glob("*.yaml")) == sorted(EXPECTED)
    assert len(EXPECTED) == 36


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stage_a_config_is_its_cell_and_fixes_what_the_study_fixes(name):
    want = EXPECTED[name]
    cfg = load_config(TrainConfig, STAGE_A / name)
    erm = load_config(TrainConfig, ERM)
    backbone, norm_layer, final_norm = NORMS[want["norm"]]
    assert (cfg.algorithm, cfg.steps, cfg.seed, cfg.selection) == (want["algorithm"], want["steps"], 0,
                                                                   "ood_validation")
    assert (cfg.model.backbone, cfg.model.norm_layer, cfg.model.final_norm) == (backbone, norm_layer, final_norm)
    hparams = cfg.typed_hparams()
    assert (hparams.lr, hparams.batch_size, hparams.weight_decay) == (1e-4, 32, 0.0)
    for key, value in want["hparams"].items():
        assert getattr(hparams, key) == value, key
    assert cfg.augment == erm.augment
    assert (cfg.eval_every, cfg.checkpoint_every, cfg.domain_columns) == (25, 50, ("domain",))
    assert "final_norm" in read_yaml(STAGE_A / name)["model"]  # every file says which network it trains
