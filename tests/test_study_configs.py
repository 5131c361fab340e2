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
# schedule -> (steps, Fishr hparams); the warm-up schedules read pipeline/algorithms/fishr.py's module docstring
SCHEDULES = {
    "step0": (400, {"penalty_anneal_iters": 0, "warmup_penalty_weight": 0.0, "optimizer_reset": True,
                    "loss_rescale": False}),
    # DomainBed: weight 0 for 100 steps, then lambda with Adam re-created
    "warmup-reset": (500, {"penalty_anneal_iters": 100, "warmup_penalty_weight": 0.0, "optimizer_reset": True,
                           "loss_rescale": False}),
    # the paper's Colored MNIST code: weight 1 for 100 steps, then lambda, Adam kept, the loss divided by lambda
    "warmup-paper": (500, {"penalty_anneal_iters": 100, "warmup_penalty_weight": 1.0, "optimizer_reset": False,
                           "loss_rescale": True}),
}
FISHR_LAMBDAS = (10.0, 100.0, 1000.0, 10000.0)
VREX_LAMBDAS = (1.0, 10.0, 100.0)


def _expected() -> dict[str, dict]:
    """File name -> (algorithm, norm, the hparams and steps the grid fixes for that cell)."""
    cells = {}
    for norm in NORMS:
        cells[f"{norm}-erm.yaml"] = {"algorithm": "erm", "norm": norm, "steps": 400, "hparams": {}}
        for schedule, (steps, schedule_hparams) in SCHEDULES.items():
            for lam in FISHR_LAMBDAS:
                cells[f"{norm}-fishr-{schedule}-lam{int(lam)}.yaml"] = {
                    "algorithm": "fishr", "norm": norm, "steps": steps,
                    "hparams": {"lam": lam, "ema": 0.95, **schedule_hparams}}
        for lam in VREX_LAMBDAS:
            cells[f"{norm}-vrex-lam{int(lam)}.yaml"] = {
                "algorithm": "vrex", "norm": norm, "steps": 400,
                "hparams": {"vrex_lambda": lam, "vrex_penalty_anneal_iters": 40}}
    return cells


EXPECTED = _expected()


def test_stage_a_has_one_file_per_cell_of_the_grid():
    # the study's stage A: 3 norms x (3 schedules x 4 lambdas for Fishr + 3 lambdas for V-REx + ERM) = 48 runs
    assert sorted(p.name for p in STAGE_A.glob("*.yaml")) == sorted(EXPECTED)
    assert len(EXPECTED) == 48
    assert sum(cell["algorithm"] == "fishr" for cell in EXPECTED.values()) == 36


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


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if "-warmup-paper-" in n))
def test_paper_schedule_config_builds_a_fishr_that_keeps_adam_and_rescales(name):
    """The config's hparams reach the algorithm: weight 1 before step 100, no Adam reset, loss divided by lambda."""
    from pipeline.algorithms import build
    from tests.helpers.networks import tiny_minibatches, tiny_networks

    cfg = load_config(TrainConfig, STAGE_A / name)
    algorithm = build(cfg.algorithm, *tiny_networks(), 3, cfg.hparams)
    assert [algorithm.hparams.penalty_weight(s) for s in (0, 99, 100)] == [1.0, 1.0, EXPECTED[name]["hparams"]["lam"]]
    algorithm.update_count.fill_(100)  # the switch: DomainBed's schedule would re-create Adam here
    first = algorithm.optimizer
    out = algorithm.update(tiny_minibatches(0))
    assert algorithm.optimizer is first
    lam = EXPECTED[name]["hparams"]["lam"]
    assert out["loss"] == pytest.approx((out["nll"] + lam * out["penalty"]) / lam, rel=1e-5)
