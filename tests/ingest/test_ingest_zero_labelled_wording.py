"""Issue 11 wording: a site with no labelled image reads "no labelled image ... not measured", never "only 0
labelled images ... see their intervals" (there are no intervals)."""

import pandas as pd

from pipeline.ingest.summary import confounding


def test_a_site_without_labels_is_not_called_only_0_labelled():
    frame = pd.DataFrame({
        "site": ["a", "a", "c"], "domain": ["a", "a", "c"], "position": ["erect", "supine", "erect"],
        "view": ["PA", "AP", "PA"], "age_group": ["adult"] * 3, "label": pd.array([1, 0, pd.NA], dtype="Int64"),
    })
    warnings = confounding(frame, shortcut_attributes=["position", "view"], min_group_size=20, warning_auroc=0.6,
                           warning_lift=0.15)["warnings"]
    assert "site=c: no labelled image; its confounding measures are not measured." in warnings
    assert not any("only 0 labelled" in w for w in warnings)
    assert any(w.startswith("site=a: only 2 labelled images") for w in warnings)
