"""One spelling of the label everywhere: the manifest's 1 is COVID-19, 0 is no finding (pipeline/protocol/labels.py)."""

import numpy as np
import pandas as pd

from pipeline.protocol.labels import LABEL_NAMES, NEGATIVE, POSITIVE, class_counts_text, label_name
from pipeline.report import cohort, pairs, shortcut_audit


def test_manifest_one_is_covid_zero_is_no_finding():
    assert (POSITIVE, NEGATIVE) == (1, 0)
    assert LABEL_NAMES == {0: "no finding", 1: "COVID-19"}


def test_label_name_reads_ints_text_and_unknowns():
    assert label_name(1) == "COVID-19" and label_name("0") == "no finding" and label_name(np.int64(1)) == "COVID-19"
    for unknown in (None, "unknown", 2, float("nan"), pd.NA):
        assert label_name(unknown) == "label unknown"


def test_report_sections_use_the_one_definition():
    # the cohort said "COVID", pairs and the audit gallery "COVID-19": now the same object
    assert cohort.LABELS is LABEL_NAMES and pairs.LABELS is LABEL_NAMES and shortcut_audit.LABEL_NAMES is LABEL_NAMES


def test_cohort_counts_table_names_the_labels_as_the_protocol_does():
    frame = pd.DataFrame({"site": ["a"] * 4, "split": ["train"] * 4, "position": ["erect", "erect", "supine", "supine"],
                          "label": pd.array([0, 1, 0, 1], dtype="Int64")})
    table, _ = cohort.counts_table(frame)
    assert table.columns[3:7] == ["erect · no finding", "erect · COVID-19", "supine · no finding", "supine · COVID-19"]


def test_class_counts_name_the_positive_class_first():
    assert class_counts_text(1234, 5) == "1,234 COVID-19 / 5 no finding"
