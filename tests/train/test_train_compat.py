"""Part C of issue 11: a model records what it was trained on, and evaluate, audit and train --resume refuse an
ingest that differs (image size, channels, labels, domain columns; on resume also domains and ingest hash) with
exit 2 naming both values. A 32 px model scoring a 64 px ingest of the same images used to run silently."""

from __future__ import annotations

import shutil

import pytest
import torch

from pipeline.cli import main
from pipeline.compat import InputProfile, check_models_compat, compare, ingest_profile
from pipeline.errors import ConfigError, DataError
from pipeline.manifest import read_manifest, write_manifest
from pipeline.models import ModelConfig, build_network, save_model
from pipeline.train import run
from tests.helpers.tiny_cohort import TRAIN_SITES, build_ingest


@pytest.fixture(scope="module")
def ingests(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizes")
    # the same images (same seed and rows) cached at 32 and at 64 px
    return {size: build_ingest(root / f"px{size}", sites=TRAIN_SITES, n_per_site=12, size=size, seed=0,
                               inputs_hash="tiny") for size in (32, 64)}


def _config(**overrides):
    base = {"algorithm": "erm", "hparams": {"lr": 1e-3, "batch_size": 4},
            "model": {"backbone": "resnet10t", "norm_layer": "group"}, "steps": 2, "eval_every": 2,
            "checkpoint_every": 2, "eval_batch_size": 64, "device": "cpu", "seed": 0}
    return {**base, **overrides}


@pytest.fixture(scope="module")
def trained32(ingests, tmp_path_factory):
    return run(ingest_dir=ingests[32], config=_config(), out=tmp_path_factory.mktemp("r") / "run",
               progress=False).out


def test_model_meta_records_what_it_was_trained_on(trained32, ingests):
    meta = torch.load(trained32 / "model.pt", weights_only=False)["meta"]
    trained_on = meta["trained_on"]
    assert trained_on["image_size"] == 32 and trained_on["channels"] == 1 and trained_on["num_classes"] == 2
    assert trained_on["label_values"] == [0, 1] and trained_on["label_names"] == ["COVID-19", "No Finding"]
    assert trained_on["domain_columns"] == ["domain"] and trained_on["domains"] == ["east", "north", "west"]
    assert trained_on["ingest_hash"] == "tiny"


def test_evaluate_api_refuses_64px_ingest_for_32px_model_naming_both(trained32, ingests, tmp_path):
    from pipeline.evaluate import run as evaluate

    with pytest.raises(DataError) as caught:
        evaluate(model_dirs=[trained32], ingest_dir=ingests[64], out=tmp_path / "eval", n_bootstrap=10)
    message = str(caught.value)
    assert message.startswith("evaluate: image size (px) of the ingest must match the model's, got 64")
    assert "was trained on 32" in message and "--size 32" in message
    assert not (tmp_path / "eval" / "stage.json").exists()


def test_evaluate_cli_exits_2_on_size_mismatch_and_0_on_the_same_size(trained32, ingests, tmp_path, capsys):
    code = main(["evaluate", str(trained32), "--ingest", str(ingests[64]), "--out", str(tmp_path / "e64"),
                 "--n-bootstrap", "10"])
    err = capsys.readouterr().err
    assert code == 2 and "got 64" in err and "trained on 32" in err
    code = main(["evaluate", str(trained32), "--ingest", str(ingests[32]), "--out", str(tmp_path / "e32"),
                 "--n-bootstrap", "10"])
    assert code == 0 and "trained on" not in capsys.readouterr().err


def test_audit_api_refuses_the_size_mismatch_too(trained32, ingests, tmp_path):
    from pipeline.audit import run as audit

    with pytest.raises(DataError, match=r"^audit: image size \(px\) of the ingest must match the model's, got 64"):
        audit(model_dirs=[trained32], ingest_dir=ingests[64], out=tmp_path / "audit")


def test_label_names_of_another_finding_are_refused(trained32, ingests, tmp_path):
    other = tmp_path / "pneumonia"
    shutil.copytree(ingests[32], other)
    frame = read_manifest(other)
    frame["label_name"] = frame["label"].map({0: "No Finding", 1: "Pneumonia"}).astype(str)
    write_manifest(frame, other)
    with pytest.raises(DataError, match=r"label names \(the finding labelled\) of the ingest must match the "
                                        r"model's, got \['No Finding', 'Pneumonia'\] .* trained on "
                                        r"\['COVID-19', 'No Finding'\]"):
        check_models_compat(checkpoints=[trained32 / "model.pt"], ingest_dir=other, stage="evaluate")


def test_same_size_ingest_passes_without_warnings(trained32, ingests):
    assert check_models_compat(checkpoints=[trained32 / "model.pt"], ingest_dir=ingests[32], stage="evaluate") == []


def test_older_model_file_infers_size_from_meta_or_warns(ingests, tmp_path, capsys):
    cfg = ModelConfig(backbone="resnet10t", norm_layer="group")
    network = build_network(cfg)
    save_model(tmp_path / "sized.pt", network, cfg, {"image_size": 32, "domain_columns": ["site"]})
    with pytest.raises(DataError, match=r"got 64 .* trained on 32"):
        check_models_compat(checkpoints=[tmp_path / "sized.pt"], ingest_dir=ingests[64], stage="audit")
    save_model(tmp_path / "bare.pt", network, cfg, {})
    warnings = check_models_compat(checkpoints=[tmp_path / "bare.pt"], ingest_dir=ingests[64], stage="audit")
    assert len(warnings) == 1 and "records no image_size, label_names" in warnings[0]
    assert "records no image_size" in capsys.readouterr().err
    save_model(tmp_path / "rgb.pt", build_network(cfg.model_copy(update={"in_chans": 3})), cfg, {})
    with pytest.raises(DataError, match=r"image channels of the ingest must match the model's, got 1 .* on 3"):
        check_models_compat(checkpoints=[tmp_path / "rgb.pt"], ingest_dir=ingests[32], stage="evaluate")


def test_compare_names_missing_domain_columns_and_strict_fields():
    model = InputProfile(image_size=32, channels=1, domain_columns=["site", "scanner"], domains=["a", "b"],
                         ingest_hash="h1")
    ingest = InputProfile(image_size=32, channels=1, domain_columns=["site"], domains=["a", "b"], ingest_hash="h2",
                          ingest_dir="/ing")
    with pytest.raises(DataError, match=r"domain columns .* got \['site'\] in /ing but m was trained on "
                                        r"\['site', 'scanner'\]\. Re-ingest with the manifest columns \['scanner'\]"):
        compare(model, ingest, stage="evaluate", model_name="m")
    model = model.model_copy(update={"domain_columns": ["site"]})
    compare(model, ingest, stage="evaluate", model_name="m")  # another ingest of the same kind: fine
    with pytest.raises(DataError, match=r"ingest hash of the ingest must match the model's, got 'h2'.*'h1'"):
        compare(model, ingest, stage="train", model_name="m", strict=True)


def test_resume_on_another_ingest_is_refused_naming_both(ingests, tmp_path):
    out = tmp_path / "run"
    run(ingest_dir=ingests[32], config=_config(), out=out, progress=False)
    with pytest.raises(DataError, match=r"^train: image size \(px\) of the ingest must match the model's, got 64 "
                                        r".* trained on 32"):
        run(ingest_dir=ingests[64], config=_config(steps=3), out=out, resume=True, progress=False)
    fewer = build_ingest(tmp_path / "fewer", n_per_site=12, size=32, seed=0,
                         sites={name: TRAIN_SITES[name] for name in ("north", "east", "harbour")})
    with pytest.raises(DataError, match=r"domains of the ingest must match the model's, got \['east', 'north'\] "
                                        r".* \['east', 'north', 'west'\]"):
        run(ingest_dir=fewer, config=_config(steps=3), out=out, resume=True, progress=False)
    assert ingest_profile(ingests[32]).image_size == 32  # the run dir's ingest is untouched; resume still works
    assert run(ingest_dir=ingests[32], config=_config(steps=3), out=out, resume=True, progress=False).final_step == 3


def test_train_refuses_a_model_that_cannot_read_the_cache(ingests, tmp_path):
    with pytest.raises(ConfigError, match=r"model.in_chans must equal the cache's image channels, got 3 vs 1"):
        run(ingest_dir=ingests[32], config=_config(model={"backbone": "resnet10t", "in_chans": 3}),
            out=tmp_path / "run", progress=False)


def test_resume_from_a_checkpoint_without_trained_on_warns_and_counts(ingests, tmp_path):
    import json

    from pipeline.train.checkpoint import checkpoint_path

    out = tmp_path / "run"
    run(ingest_dir=ingests[32], config=_config(), out=out, progress=False)
    payload = torch.load(checkpoint_path(out), weights_only=False)
    del payload["trained_on"]  # as written before trained_on existed
    torch.save(payload, checkpoint_path(out))
    run(ingest_dir=ingests[32], config=_config(steps=3), out=out, resume=True, progress=False)
    stage = json.loads((out / "stage.json").read_text())
    assert stage["n_warnings"] == 1 and "records no trained_on" in stage["warnings"][0]
