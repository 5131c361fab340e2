import json

import yaml

from pipeline.cli import main


def test_train_command_writes_run_and_resume_finishes(toy_ingest_dir, tmp_path, tiny_config):
    config = tmp_path / "erm.yaml"
    config.write_text(yaml.safe_dump(tiny_config(steps=2, eval_every=2, checkpoint_every=2)))
    out = tmp_path / "run"
    assert main(["train", str(toy_ingest_dir), "--config", str(config), "--out", str(out)]) == 0
    assert (out / "model.pt").is_file() and (out / "stage.json").is_file()
    assert main(["train", str(toy_ingest_dir), "--config", str(config), "--out", str(out), "--resume",
                 "--steps", "3"]) == 0
    assert '"step": 3' in (out / "history.jsonl").read_text()


def test_train_command_one_domain_exits_2_with_message(one_domain_ingest_dir, tmp_path, tiny_config, capsys):
    config = tmp_path / "erm.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    code = main(["train", str(one_domain_ingest_dir), "--config", str(config), "--out", str(tmp_path / "r")])
    assert code == 2 and "at least 2" in capsys.readouterr().err


def test_shipped_train_configs_validate():
    from pathlib import Path

    from pipeline.train import load_train_config

    configs = sorted((Path(__file__).resolve().parents[2] / "configs" / "train").glob("*.yaml"))
    names = {p.stem for p in configs}
    assert {"erm", "fishr", "coral", "dann", "irm", "vrex", "fish", "groupdro"} <= names
    for path in configs:
        cfg = load_train_config(path)
        assert path.stem == cfg.algorithm or path.stem.startswith(f"{cfg.algorithm}_")  # fishr_xrv: a variant


def test_train_command_sweep_prints_what_ran_and_a_relaunch_skips_it(toy_ingest_dir, tmp_path, tiny_config, capsys):
    config = tmp_path / "erm.yaml"
    config.write_text(yaml.safe_dump(tiny_config(steps=2, eval_every=2, checkpoint_every=2)))
    args = ["train", str(toy_ingest_dir), "--config", str(config), "--out", str(tmp_path / "sw"), "--seeds", "2"]
    assert main(args) == 0
    assert "train: sweep ran 2 runs, skipped 0 done, 0 failed" in capsys.readouterr().out
    assert main(args) == 0
    assert "train: sweep ran 0 runs, skipped 2 done, 0 failed" in capsys.readouterr().out
    from pipeline.artefacts.stage_file import load_stage

    record = load_stage(tmp_path / "sw")  # the sweep's own stage.json, typed
    assert record.stage == "train_sweep" and (record.jobs, record.ran, record.n_failed) == (2, 0, 0)
    assert record.to_json_dict() == json.loads((tmp_path / "sw" / "stage.json").read_text(encoding="utf-8"))
