from typing import Literal

import pytest

from pipeline.config import StrictModel, load_config
from pipeline.errors import ConfigError


class Inner(StrictModel):
    kind: Literal["batch", "group"] = "batch"


class Example(StrictModel):
    n: int = 3
    p: float = 0.5
    inner: Inner = Inner()


def test_load_config_unknown_key_names_file_key_and_allowed(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("n: 4\nnn: 5\n")
    with pytest.raises(ConfigError) as err:
        load_config(Example, path)
    message = str(err.value)
    assert str(path) in message and "nn" in message and "'inner'" in message


def test_load_config_bad_literal_lists_allowed_values(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("inner:\n  kind: layer\n")
    with pytest.raises(ConfigError) as err:
        load_config(Example, path)
    assert "inner.kind" in str(err.value) and "['batch', 'group']" in str(err.value) and "'layer'" in str(err.value)


def test_load_config_overrides_win_and_none_is_ignored(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("n: 4\n")
    cfg = load_config(Example, path, overrides={"n": 7, "p": None})
    assert cfg.n == 7 and cfg.p == 0.5


def test_load_config_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="must exist"):
        load_config(Example, tmp_path / "nope.yaml")
