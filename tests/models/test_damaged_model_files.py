"""A truncated or damaged .pt (model.pt, selected/*.pt, a train checkpoint) is a DataError naming the file, never a
torch traceback: every reader goes through pipeline.models.network.read_torch_file."""

import os

import pytest
import torch

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.models import load_model
from pipeline.runs import collect_models
from tests.helpers.tiny_cohort import build_ingest, save_run


@pytest.mark.parametrize("size", [10000, 100, 0])
def test_truncated_model_file_is_a_data_error_naming_it(tmp_path, size):
    run = save_run(tmp_path / "erm-s0", selected_rules=())
    os.truncate(run / "model.pt", size)
    for read in (lambda: collect_models([run]), lambda: load_model(run / "model.pt")):
        with pytest.raises(DataError) as err:
            read()
        assert str(run / "model.pt") in str(err.value)
        assert "readable cxr-fishr model file" in str(err.value) and "re-run `cxr-fishr train`" in str(err.value)


def test_truncated_selected_checkpoint_is_a_data_error_naming_it(tmp_path):
    run = save_run(tmp_path / "erm-s0", selected_rules=("oracle",))
    os.truncate(run / "selected" / "oracle.pt", 10000)
    with pytest.raises(DataError, match="oracle.pt must be a readable cxr-fishr model file, got 10000 bytes"):
        collect_models([run], stage="audit")


def test_a_pt_that_is_not_a_model_file_is_a_data_error(tmp_path):
    torch.save([1, 2, 3], tmp_path / "other.pt")
    with pytest.raises(DataError, match="must be a cxr-fishr model file of format 1, got 'list'"):
        load_model(tmp_path / "other.pt")


def test_evaluate_with_a_truncated_model_exits_2(tmp_path, capsys):
    ingest = build_ingest(tmp_path / "ingest", n_per_site=4)
    run = save_run(tmp_path / "erm-s0", selected_rules=())
    os.truncate(run / "model.pt", 10000)
    code = main(["evaluate", str(run), "--ingest", str(ingest), "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "model.pt must be a readable cxr-fishr model file" in err


def test_resume_from_a_truncated_checkpoint_is_a_data_error(tmp_path):
    from pipeline.train.checkpoint import checkpoint_path, load_checkpoint

    path = checkpoint_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(DataError, match="must be a readable train checkpoint.*run again without --resume"):
        load_checkpoint(tmp_path, resume_key={})


def test_a_truncated_torchxrayvision_weight_file_is_a_config_error(tmp_path):
    from pipeline.errors import ConfigError
    from pipeline.models.xrv import _read_xrv_file

    path = tmp_path / "xrv.pt"
    torch.save({"w": torch.zeros(10000)}, path)
    os.truncate(path, 10000)
    with pytest.raises(ConfigError, match="pretrained must be a torchxrayvision weight file, got .*xrv.pt"):
        _read_xrv_file(path)
