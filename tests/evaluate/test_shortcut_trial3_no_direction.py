"""An attribute whose direction is not estimable (one known level, or every level at one positive rate) lists no
positive/negative-associated values anywhere it is written, and says why."""

import numpy as np
import pandas as pd

from pipeline.evaluate.scoring import GroupScorer, score_frame
from pipeline.protocol.shortcuts import estimate_direction


def _train(sex: list[str], label: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"split": "train", "site": "a", "sex": sex, "label": label})


def test_one_known_level_lists_no_direction():
    direction = estimate_direction(_train(["M"] * 6, [0, 1, 0, 1, 1, 0]), "sex")
    described = direction.describe()
    assert described["positive_associated"] == [] and described["negative_associated"] == []
    assert "a direction needs >= 2" in described["not_measured"]["negative_associated"]
    assert described["value_prevalence"] == {"M": 0.5}  # the level itself is still reported


def test_same_rate_levels_list_no_direction_but_a_real_one_does():
    flat = estimate_direction(_train(["M", "F"] * 4, [0, 0, 1, 1] * 2), "sex").describe()
    assert flat["positive_associated"] == [] == flat["negative_associated"]
    real = estimate_direction(_train(["M", "F"] * 4, [1, 0] * 4), "sex").describe()
    assert real["positive_associated"] == ["M"] and real["negative_associated"] == ["F"]
    assert "not_measured" not in real


def test_metrics_shortcut_block_lists_no_direction_for_one_level():
    direction = estimate_direction(_train(["M"] * 6, [0, 1, 0, 1, 1, 0]), "sex")
    frame = pd.DataFrame({"site": ["a"] * 4, "position": ["erect"] * 4, "sex": ["M"] * 4, "label": [0, 1, 0, 1]})
    scorer = GroupScorer(threshold=0.5, selection_rule="training_domain", split="test", n_bootstrap=5,
                         directions={"sex": direction})
    block = score_frame(frame, np.array([0.2, 0.8, 0.3, 0.9]), scorer)["per_site"]["a"]["shortcuts"]["sex"]
    assert block["positive_associated"] == [] and block["negative_associated"] == []
    assert "a direction needs >= 2" in block["not_measured"]["conflict_accuracy"]
