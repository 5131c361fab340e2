import json
import re

import numpy as np
import pytest
import torch

from pipeline.cache import ImageCache
from pipeline.errors import ConfigError, DataError, TrainingError
from pipeline.manifest import read_manifest
from pipeline.models import load_model
from pipeline.train import run
from pipeline.train.checkpoint import checkpoint_path

MODEL_META_KEYS = {"algorithm", "hparams", "seed", "step", "selection_rule", "selection_score", "training_domains",
                   "domain_columns", "ingest_dir", "train_config"}
EVAL_KEYS = {"step", "val_acc", "val_acc_per_domain", "ood_val_acc", "test_acc", "test_conflict_acc",
             "predicts_constant"}


@pytest.fixture(scope="module")
def erm_run(ingest_dir, tmp_path_factory):
    cfg = {"algorithm": "erm", "hparams": {"lr": 1e-3, "batch_size": 16},
           "model": {"backbone": "resnet10t", "norm_layer": "group"}, "augment": {"enabled": False},
           "steps": 80, "eval_every": 20, "checkpoint_every": 40, "device": "cpu", "seed": 0}
    return run(ingest_dir=ingest_dir, config=cfg, out=tmp_path_factory.mktemp("erm") / "run", progress=False)


def _lines(result):
    return [json.loads(line) for line in result.history_path.read_text().splitlines()]


def test_train_erm_learns_above_chance_on_training_domain_val(erm_run):
    evals = [line for line in _lines(erm_run) if "val_acc" in line]
    best = max(evals, key=lambda line: line["val_acc"])
    assert best["val_acc"] > 0.6 and not best["predicts_constant"]["val"]


def test_train_history_lines_have_contract_keys(erm_run):
    lines = _lines(erm_run)
    train_lines = [line for line in lines if "val_acc" not in line]
    eval_lines = [line for line in lines if "val_acc" in line]
    assert [line["step"] for line in train_lines] == list(range(1, 81))
    assert all(set(line) == {"step", "loss"} for line in train_lines)
    assert [line["step"] for line in eval_lines] == [20, 40, 60, 80]
    for line in eval_lines:
        assert EVAL_KEYS <= set(line)
        assert set(line["predicts_constant"]) == {"val", "ood_val", "test"}
        assert all(0.0 <= acc <= 1.0 for acc in line["val_acc_per_domain"].values())


def test_train_run_dir_has_contract_outputs(erm_run, ingest_dir):
    out = erm_run.out
    for name in ("model.pt", "selection.json", "history.jsonl", "stage.json", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    selection = json.loads((out / "selection.json").read_text())
    assert set(selection) == {"training_domain", "ood_validation", "oracle"}  # no held-out domain in this run
    assert "upper bound" in selection["oracle"]["label"]
    for rule, choice in selection.items():
        if choice["step"] is None:  # constant predictor at every evaluation: nothing selected, flagged
            assert choice["constant_predictor"] and not (out / "selected" / f"{rule}.pt").exists()
            continue
        _, _, meta = load_model(out / "selected" / f"{rule}.pt")
        assert MODEL_META_KEYS <= set(meta)
        assert (meta["selection_rule"], meta["step"], meta["selection_score"]) == (rule, choice["step"], choice["score"])
    _, _, meta = load_model(out)
    assert meta["selection_rule"] == "training_domain"
    assert meta["training_domains"] == sorted(read_manifest(ingest_dir).query("split == 'train'")["domain"].unique())
    stage = json.loads((out / "stage.json").read_text())
    assert stage["stage"] == "train" and stage["final_step"] == 80


def test_train_selected_model_reproduces_its_selection_score(erm_run, ingest_dir):
    # The selected file holds the weights that were scored: re-scoring them on the pooled val split agrees.
    selection = json.loads((erm_run.out / "selection.json").read_text())
    network, _, _ = load_model(erm_run.out / "selected" / "training_domain.pt")
    frame = read_manifest(ingest_dir)
    val = frame[frame["split"] == "val"].sort_values("domain", kind="stable")
    images = ImageCache.open(ingest_dir).images[val["cache_index"].to_numpy()]
    with torch.no_grad():
        pred = network(torch.from_numpy(np.asarray(images, dtype=np.float32)).unsqueeze(1)).argmax(1).numpy()
    assert (pred == val["label"].to_numpy()).mean() == pytest.approx(selection["training_domain"]["score"])


def test_train_one_training_domain_raises_data_error(one_domain_ingest_dir, tmp_path, tiny_config):
    with pytest.raises(DataError, match="at least 2"):
        run(ingest_dir=one_domain_ingest_dir, config=tiny_config(), out=tmp_path / "run", progress=False)


def test_train_unknown_algorithm_lists_valid_ones(toy_ingest_dir, tmp_path, tiny_config):
    with pytest.raises(ConfigError, match=r"algorithm must be one of \[.*'erm'.*'fishr'"):
        run(ingest_dir=toy_ingest_dir, config=tiny_config(algorithm="fisher"), out=tmp_path / "r", progress=False)


def test_train_unknown_hparam_lists_valid_ones(toy_ingest_dir, tmp_path, tiny_config):
    with pytest.raises(ConfigError, match=r"must be among \[.*'lambda'.*got unknown \['lamda'\]"):
        run(ingest_dir=toy_ingest_dir, config=tiny_config(algorithm="fishr", hparams={"lamda": 10}),
            out=tmp_path / "r", progress=False)


def test_train_nan_loss_raises_with_step_and_term_and_keeps_checkpoint(toy_ingest_dir, tmp_path, tiny_config):
    # An absurd learning rate blows the weights up within a few steps: the loss turns NaN for real.
    cfg = tiny_config(hparams={"lr": 1e30, "batch_size": 8}, steps=20, eval_every=20, checkpoint_every=1)
    with pytest.raises(TrainingError, match=r"loss term 'loss' must be finite, got nan at step (\d+)") as info:
        run(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "run", progress=False)
    nan_step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    saved = torch.load(checkpoint_path(tmp_path / "run"), weights_only=False)
    assert saved["step"] == nan_step - 1
    assert all(torch.isfinite(v).all() for k, v in saved["algorithm"].items() if k != "__optimizer__")
    assert not (tmp_path / "run" / "stage.json").exists()


def test_train_holdout_domain_enables_leave_one_domain_out(toy_ingest_dir, tmp_path, tiny_config):
    result = run(ingest_dir=toy_ingest_dir, config=tiny_config(holdout_domain="west"), out=tmp_path / "run",
                 progress=False)
    assert "leave_one_domain_out" in result.selection
    _, _, meta = load_model(result.model_path)
    assert meta["training_domains"] == ["east", "north"] and meta["holdout_domain"] == "west"
    evals = [json.loads(x) for x in result.history_path.read_text().splitlines() if "val_acc" in x]
    assert all(set(e["val_acc_per_domain"]) == {"east", "north"} and e["holdout_acc"] is not None for e in evals)


def test_train_unavailable_selection_rule_raises_config_error(toy_ingest_dir, tmp_path, tiny_config):
    with pytest.raises(ConfigError, match="leave_one_domain_out"):
        run(ingest_dir=toy_ingest_dir, config=tiny_config(selection="leave_one_domain_out"), out=tmp_path / "r",
            progress=False)
