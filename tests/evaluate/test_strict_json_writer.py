import json
import math

import numpy as np

from pipeline.stage import to_jsonable, write_json_atomic


def refuse(token: str):
    raise ValueError(f"non-standard JSON constant {token}")


def test_write_json_atomic_turns_every_non_finite_number_into_null(tmp_path):
    data = {"nan": float("nan"), "inf": float("inf"), "np": np.float64("nan"), "array": np.array([1.0, np.nan]),
            "nested": [{"x": -math.inf}], "ok": 0.25, "int": np.int64(3), "flag": True}
    write_json_atomic(tmp_path / "out.json", data)
    loaded = json.loads((tmp_path / "out.json").read_text(), parse_constant=refuse)
    assert loaded == {"nan": None, "inf": None, "np": None, "array": [1.0, None], "nested": [{"x": None}],
                      "ok": 0.25, "int": 3, "flag": True}


def test_to_jsonable_keeps_finite_numbers_unchanged():
    assert to_jsonable({"a": np.float32(0.5), "b": [np.int32(2)]}) == {"a": 0.5, "b": [2]}
