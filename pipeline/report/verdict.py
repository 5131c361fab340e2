"""The one-sentence verdict per algorithm: does it use the lungs or shortcuts? Every verdict names the
measurements it rests on; without any it says "cannot be judged" and what is missing.

The thresholds it applies are defined in pipeline/protocol/thresholds.py (docs/report.md repeats them);
tests/report/test_verdict_rules.py and tests/protocol/test_thresholds.py pin each at its boundary.
"""

from __future__ import annotations

from typing import Any

from pipeline.protocol.thresholds import (
    CONFLICT_GAP,
    FLIP_RATE,
    LEARNT,
    LUNG_SHARE,
    MIN_GROUP_N,
    SHORTCUT_OVER_LUNGS,
)
from pipeline.report.tables import is_number


def _m(block: Any) -> Any:
    return block.get("mean") if isinstance(block, dict) else None


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def lung_mask_status(value: Any) -> tuple[str, str]:
    """(``provided`` | ``estimated`` | ``absent`` | ``unknown``, a phrase for the page) from audit.json's
    ``lung_masks``: a string (``manifest``, ``estimated``, ``none``) or counts ``{provided, estimated, absent}``."""
    if isinstance(value, dict):
        counts = {k: int(value[k]) for k in ("provided", "estimated", "absent") if is_number(value.get(k))}
        total = sum(counts.values())
        if not total:
            return "unknown", "lung masks: not recorded"
        if counts.get("absent", 0) == total:
            return "absent", "no lung mask for any image"
        parts = ", ".join(f"{n:,} {k}" for k, n in counts.items() if n)
        return ("estimated" if counts.get("estimated") else "provided"), f"lung masks: {parts}"
    text = str(value or "").lower()
    if text == "estimated":
        return "estimated", "lung masks ESTIMATED (fixed ellipses)"
    if text in ("none", "absent", "no", "false"):
        return "absent", "no lung mask"
    if text:
        return "provided", f"lung masks from the {text}"
    return "unknown", "lung masks: not recorded"


def _n(value: Any) -> int | None:
    return int(value) if is_number(value) else None


def too_few(counts: dict[str, Any]) -> str | None:
    """"too few images (n=1 aligned; at least MIN_GROUP_N per group)" when a group is below MIN_GROUP_N or its
    size was not recorded; None when every group is large enough. ``counts``: group name -> n (None = unknown)."""
    known = {k: _n(v) for k, v in counts.items()}
    if any(v is None for v in known.values()):
        missing = ", ".join(k for k, v in known.items() if v is None)
        return f"group size not recorded ({missing}), so it is not evidence"
    small = {k: v for k, v in known.items() if v is not None and v < MIN_GROUP_N}
    if not small:
        return None
    sizes = ", ".join(f"n={v} {k}" for k, v in small.items())
    return f"too few images ({sizes}; at least {MIN_GROUP_N} per group needed)"


def _conflict(numbers: dict[str, Any], aligned: Any, reasons: dict[str, str]) -> tuple[str | None, str | None, bool]:
    """(evidence text, missing text, shortcut?) for the conflicting-vs-aligned accuracy gap; a group below
    MIN_GROUP_N images (or of unrecorded size) makes it "not measured (too few images ...)"."""
    attribute = numbers.get("conflict_attribute")
    conflict = _m(numbers.get("conflict_accuracy"))
    if not is_number(conflict):
        why = reasons.get("conflict_accuracy") or \
            f"no accuracy on images whose {attribute or 'shortcut attribute'} contradicts the label"
        return None, f"conflict gap ({why})", False
    if not is_number(aligned):
        why = reasons.get("aligned_accuracy") or "no accuracy on aligned images to compare with"
        return None, f"conflict gap ({why})", False
    n_conflict, n_aligned = numbers.get("n_conflict"), numbers.get("n_aligned")
    small = too_few({"conflicting": n_conflict, "aligned": n_aligned})
    if small:
        shown = f"conflicting {_pct(conflict)} vs aligned {_pct(aligned)}"
        return None, f"conflict gap ({small}: {shown})", False
    gap = aligned - conflict
    text = (f"{attribute + '-' if attribute else ''}conflicting images {_pct(conflict)} (n={_n(n_conflict)}) vs aligned {_pct(aligned)} "
            f"(n={_n(n_aligned)}) (gap {100 * gap:.0f} points)")
    return text, None, gap >= CONFLICT_GAP


def _flips(numbers: dict[str, Any], reasons: dict[str, str]) -> tuple[str | None, str | None, bool]:
    rate = _m(numbers.get("counterfactual_flip_rate"))
    if not is_number(rate):
        why = reasons.get("counterfactual_flip_rate") or "no counterfactual images were audited"
        return None, f"counterfactual flip rate ({why})", False
    pairs = numbers.get("n_counterfactual")
    if pairs is not None and (small := too_few({"pairs": pairs})):
        return None, f"counterfactual flip rate ({small}: {_pct(rate)})", False
    n = f" (n={_n(pairs)} pairs)" if _n(pairs) is not None else ""
    return f"a position swap flips {_pct(rate)} of predictions{n}", None, rate >= FLIP_RATE


def _ablation(numbers: dict[str, Any], lung_masks: Any, reasons: dict[str, str]
              ) -> tuple[str | None, str | None, bool, float | None]:
    """(evidence, missing, shortcut?, lung share) from region ablation; estimated lung masks are said."""
    status, phrase = lung_mask_status(lung_masks)
    lungs, shortcuts = _m(numbers.get("region_ablation_lungs")), _m(numbers.get("region_ablation_shortcuts"))
    if not is_number(lungs):
        why = reasons.get("region_ablation_lungs") or (phrase if status == "absent" else "no region ablation")
        return None, f"region ablation of the lungs ({why})", False, None
    n = numbers.get("n_ablation")
    if n is not None and (small := too_few({"images": n})):
        return None, f"region ablation of the lungs ({small})", False, None
    estimated = " (estimated)" if status == "estimated" else ""
    text = f"region ablation puts {_pct(lungs)}{estimated} of the decision inside the lungs"
    shortcut = False
    if is_number(shortcuts):
        text += f" and {_pct(shortcuts)} on shortcut regions"
        shortcut = shortcuts > SHORTCUT_OVER_LUNGS * lungs
    if status == "estimated":
        text += f" ({phrase}: an estimate)"
    return text, None, shortcut, float(lungs)


def verdict(numbers: dict[str, Any], aligned: Any, *, lung_masks: Any = None,
            reasons: dict[str, str] | None = None) -> tuple[str, str]:
    """(verdict, css class "bad" | "good" | "") for one algorithm's headline ``numbers`` (spreads with a ``mean``).

    ``aligned``: mean accuracy on the test images whose position agrees with the label (None when unknown);
    ``lung_masks``: audit.json's ``lung_masks``; ``reasons``: why a headline field was not measured.
    """
    reasons = reasons or {}
    if numbers.get("constant_predictor"):  # the scored predictions themselves (evaluate's split and threshold)
        runs = "; ".join(numbers.get("constant_where") or numbers["constant_predictor"])
        return f"is a constant predictor ({runs}), so it reads nothing in the image", "bad"
    if numbers.get("no_checkpoint"):  # train's selection found none; the weights scored are the final ones
        runs = "; ".join(numbers["no_checkpoint"])
        return (f"has no checkpoint selected ({runs}), so there is no selected model to judge; the numbers below "
                "are the final weights'"), "bad"
    trained = _m(numbers.get("training_site_accuracy"))
    if is_number(trained) and trained < LEARNT:
        return (f"has not learnt the task ({_pct(trained)} on the training hospitals' validation images, below "
                f"{_pct(LEARNT)}), so where it looks means little"), ""
    checks = [_conflict(numbers, aligned, reasons), _flips(numbers, reasons)]
    ablation = _ablation(numbers, lung_masks, reasons)
    checks.append(ablation[:3])
    evidence = [e for e, _, _ in checks if e]
    missing = [m for _, m, _ in checks if m]
    shortcut = [e for e, _, s in checks if s and e]
    if shortcut:
        evidence_text = f"evidence: {'; '.join(shortcut)}"
        if ablation[3] is not None:  # a lung claim needs a lung measurement
            return f"relies on shortcuts rather than the lungs ({evidence_text})", "bad"
        why = str(ablation[1]).removeprefix("region ablation of the lungs (").removesuffix(")")
        return f"relies on shortcuts ({evidence_text}); lung reliance not measured ({why})", "bad"
    if not evidence:
        enough = " on enough images" if any("too few images" in m for m in missing) else ""
        return f"cannot be judged: nothing behavioural was measured{enough} (missing: {'; '.join(missing)})", ""
    based = f"measured: {'; '.join(evidence)}" + (f"; not measured: {'; '.join(missing)}" if missing else "")
    accuracy, majority = _m(numbers.get("test_site_accuracy")), _m(numbers.get("test_site_majority_accuracy"))
    if is_number(accuracy) and is_number(majority) and accuracy <= majority:
        return (f"does not beat always predicting the majority class at the test hospital ({_pct(accuracy)} vs "
                f"{_pct(majority)}), so no lung evidence can be credited ({based})"), "bad"
    lung_share = ablation[3]
    if lung_share is None:
        return f"shows no shortcut sign where measured, but its use of the lungs cannot be judged ({based})", ""
    if lung_share >= LUNG_SHARE:
        return f"mostly uses lung evidence ({based})", "good"
    return (f"does not mainly use the lungs: only {_pct(lung_share)} of its decision falls inside them, the rest "
            f"outside ({based})"), "bad"
