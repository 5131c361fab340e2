"""The train-time "constant at selection" fact, kept apart from evaluate's own constant flag.

Train's selection skips an evaluation whose predictions on the rule's selection set are all one class; a rule whose
every evaluation was skipped selects nothing (selection.json ``constant_predictor``). That check runs at train's
arg-max cut-off (P(label = 1) >= 0.5) on the rule's selection set, NOT at evaluate's threshold on the scored split,
so it says nothing about whether the scored predictions are constant: metrics.json carries it as
``selection.constant_at_selection`` = ``{rule, split, threshold, n, evaluations, n_not_measured, text}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.protocol.selection import RULES, TRAINING_DOMAIN

if TYPE_CHECKING:
    import pandas as pd

TRAIN_THRESHOLD = 0.5  # train predicts by the arg-max of two logits: P(label = 1) >= 0.5
SPLIT_WORDS = {"val": "validation images of the training hospitals", "holdout": "held-out-hospital images",
               "ood_val": "validation-hospital images", "test": "test images"}


def _rule_rows(frame: pd.DataFrame, *, rule: str, meta: dict[str, Any]) -> pd.DataFrame:
    """The rows train scored for ``rule`` (pipeline/train/domains.py build_train_data), labelled ones only."""
    from pipeline.compat import model_profile
    from pipeline.manifest import domain_values, labelled

    split = RULES[rule].split if rule in RULES else TRAINING_DOMAIN.split
    if split in ("test", "ood_val"):  # the oracle's and OOD validation's rows: a manifest split of their own
        return labelled(frame[frame["split"] == split])
    profile, _ = model_profile({"meta": meta})
    columns = tuple(profile.domain_columns or ("domain",))
    domains = domain_values(frame, columns)
    in_domain = frame["split"].isin(["train", "val"]).to_numpy()
    if split == "holdout":  # leave-one-domain-out: the held-out training domain
        return labelled(frame[in_domain & (domains == meta.get("holdout_domain")).to_numpy()])
    trained = domains.isin(profile.domains or []).to_numpy() if profile.domains else in_domain
    return labelled(frame[(frame["split"] == "val").to_numpy() & trained])


def selection_set_size(*, frame: pd.DataFrame, meta: dict[str, Any], rule: str,
                       same_ingest: bool) -> tuple[int | None, str | None]:
    """(number of labelled images train checked ``rule``'s predictions on, reason when unknown). The count comes
    from the threshold train stored (its pooled val rows) for training_domain, else from this manifest when it
    is the model's own training ingest (``same_ingest``); never from another cohort."""
    stored = meta.get("threshold") if isinstance(meta.get("threshold"), dict) else {}
    if rule == TRAINING_DOMAIN.name and str(stored.get("source", "")).startswith("train: val") and stored.get("n"):
        return int(stored["n"]), None
    if not same_ingest:
        return None, "the scored ingest is not the model's training ingest, so its selection set cannot be counted"
    try:
        return int(len(_rule_rows(frame, rule=rule, meta=meta))), None
    except Exception as exc:  # noqa: BLE001 - a missing domain column: the count stays unknown, with why
        return None, f"the selection set cannot be counted here ({exc})"


def constant_at_selection(*, selection: dict[str, Any], meta: dict[str, Any], frame: pd.DataFrame,
                          same_ingest: bool) -> dict[str, Any] | None:
    """The fact above for one model entry's ``selection`` (selection_truth), or None when train's selection did not
    find every evaluation constant."""
    if not selection.get("constant_predictor"):
        return None
    rule = str(selection.get("rule"))
    split = RULES[rule].split if rule in RULES else TRAINING_DOMAIN.split
    n, why = selection_set_size(frame=frame, meta=meta, rule=rule, same_ingest=same_ingest)
    fact = {"rule": rule, "split": split, "threshold": TRAIN_THRESHOLD, "n": n,
            "evaluations": selection.get("evaluations"), "n_not_measured": why}
    return {**fact, "text": constant_text(fact)}


def constant_text(fact: dict[str, Any]) -> str:
    """"at selection, on 6 validation images of the training hospitals at threshold 0.5, every prediction was one
    class (all 3 evaluations)"."""
    n = fact.get("n")
    count = f"{int(n)} " if isinstance(n, int) else ""
    where = SPLIT_WORDS.get(str(fact.get("split")), f"{fact.get('split')} images")
    evaluations = fact.get("evaluations")
    every = f" (all {int(evaluations)} evaluations)" if isinstance(evaluations, int) else ""
    return (f"at selection, on {count}{where} at threshold {fact.get('threshold', TRAIN_THRESHOLD):g}, every "
            f"prediction was one class{every}")


def with_constant_fact(selection: dict[str, Any], fact: dict[str, Any] | None, *,
                       weights_step: int | None) -> dict[str, Any]:
    """``selection`` plus ``constant_at_selection``; its reason reworded from the fact when nothing was selected."""
    out = {**selection, "constant_at_selection": fact}
    if fact is not None and selection.get("step") is None:
        out["reason"] = (f"no checkpoint selected: {fact['text']}; model.pt holds the final weights "
                         f"(step {weights_step})")
    return out
