"""Finding 4 (issue 11): the train stage's "no checkpoint selected, constant predictor" reaches metrics.json and
the console; never a different step nor constant_predictor false. The run is a real tiny training whose learning
rate is ~0 (1e-12), so every evaluation predicts one class."""

import json

import pytest
import torch

from pipeline.cli import main
from pipeline.evaluate import run as evaluate_run
from pipeline.models import load_model
from tests.helpers.tiny_cohort import TRAIN_SITES, build_ingest

CONFIG = {"algorithm": "erm", "hparams": {"lr": 1e-12, "batch_size": 8},
          "model": {"backbone": "resnet10t", "norm_layer": "group"}, "augment": {"enabled": False},
          "steps": 2, "eval_every": 1, "checkpoint_every": 2, "device": "cpu", "seed": 0}


@pytest.fixture(scope="module")
def constant_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("constant")
    ingest = build_ingest(root / "ingest", sites=TRAIN_SITES, n_per_site=12, size=32, seed=0)
    config = root / "erm_lr0.yaml"
    config.write_text(json.dumps(CONFIG))  # JSON is YAML
    return ingest, config, root / "run"


def test_train_console_says_no_checkpoint_selected_and_why(constant_run, capsys):
    ingest, config, out = constant_run
    assert main(["train", str(ingest), "--config", str(config), "--out", str(out)]) == 0
    console = capsys.readouterr().out
    assert "selected step None" not in console and "score None" not in console
    assert "training_domain: no checkpoint selected: every one of the 2 evaluations predicted one class" in console
    selection = json.loads((out / "selection.json").read_text())["training_domain"]
    assert selection["step"] is None and selection["constant_predictor"] and selection["selected"] is False
    _, _, meta = load_model(out)
    assert meta["constant_predictor"] is True and meta["step"] == 2
    assert 0.0 <= meta["threshold"]["value"] <= 1.0 and meta["threshold"]["step"] == 2  # train stores its threshold


def test_metrics_carry_the_selection_truth(constant_run, tmp_path):
    ingest, _, out = constant_run
    if not (out / "model.pt").is_file():  # the train test above makes the run; run it alone and it trains here
        assert main(["train", str(ingest), "--config", str(constant_run[1]), "--out", str(out)]) == 0
    metrics = evaluate_run(model_dirs=[out], ingest_dir=ingest, out=tmp_path / "eval", n_bootstrap=0).metrics
    entry = metrics["models"]["run"]
    assert entry["selection"]["rule"] == "training_domain"
    assert entry["selection"]["selected"] is False and entry["selection"]["step"] is None
    assert entry["selection"]["constant_predictor"] is True
    assert "no checkpoint selected" in entry["selection"]["reason"] and "final weights (step 2)" in \
        entry["selection"]["reason"]
    # the existing keys agree with it: no step, the weights' step said apart; constant_predictor is the scored
    # predictions' own flag (train's check is selection.constant_at_selection, trial 2 finding 1)
    assert entry["step"] is None and entry["weights_step"] == 2
    assert entry["constant_predictor"] is entry["constant_on_split"]
    assert entry["selection"]["constant_at_selection"]["threshold"] == 0.5
    assert "no checkpoint selected" in entry["protocol"]
    assert entry["val_acc_at_step"] is None and "no checkpoint selected" in entry["not_measured"]["val_acc_at_step"]
    assert any(w.startswith("run: no checkpoint selected") for w in metrics["warnings"])


def test_an_older_selection_json_without_reason_still_says_constant(tmp_path):
    from pipeline.runs import selection_truth

    (tmp_path / "selection.json").write_text(json.dumps(
        {"training_domain": {"step": None, "score": None, "constant_predictor": True}}))
    truth = selection_truth(model_dir=tmp_path, meta={"step": 15, "constant_predictor": False},
                            rule="training_domain", main=True)
    assert (truth["step"], truth["selected"], truth["constant_predictor"]) == (None, False, True)
    assert truth["reason"].startswith("no checkpoint selected: every evaluation predicted one class")
    assert truth["reason"].endswith("final weights (step 15)")
