"""The thresholds of the report's verdict (pipeline/report/verdict.py applies them; docs/report.md repeats them).

Each is pinned at its boundary by tests/report/test_verdict_rules.py and tests/protocol/test_thresholds.py: moving
one changes a verdict those tests check.
"""

from __future__ import annotations

# Shortcut evidence (behaviour only, never attribution maps): any one of these says "relies on shortcuts".
CONFLICT_GAP = 0.20        # conflicting-image accuracy at least this far below the aligned images' accuracy
FLIP_RATE = 0.30           # a position swap alone changes at least this share of predictions
SHORTCUT_OVER_LUNGS = 1.0  # region ablation: shortcut regions' share above this multiple of the lungs' share
# Lung evidence: region ablation must put at least this share of the decision inside the lungs; the share outside
# (shortcut regions and the rest of the image) counts against lung reliance.
LUNG_SHARE = 0.5
LEARNT = 0.6               # below this training-site validation accuracy the model has not learnt the task
# A measurement is evidence only with at least this many images in each compared group (conflicting and aligned
# images, counterfactual pairs, ablated images): one image's 0% or 100% says nothing about a model.
MIN_GROUP_N = 10
