"""The train-time "constant at selection" fact, kept apart from evaluate's own constant flag.

Train's selection skips an evaluation whose predictions on the rule's selection set are all one class; a rule whose
every evaluation was skipped selects nothing (selection.json ``constant_predictor``). That check runs at train's
arg-max cut-off (P(label = 1) >= 0.5) on the rule's selection set, NOT at evaluate's threshold on the scored split,
so it says nothing about whether the scored predictions are constant: metrics.json carries it as
``selection.constant_at_selection`` = ``{rule, split, threshold, n, evaluations, n_not_measured, text}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.artefacts.metrics import EntrySelection
from pipeline.artefacts.model_meta import ModelMeta
from pipeline.artefacts.selection import ConstantAtSelection, SelectionTruth
from pipeline.protocol.selection import RULES, TRAINING_DOMAIN

if TYPE_CHECKING:
    import pandas as pd

TRAIN_THRESHOLD = 0.5  # train predicts by the arg-max of two logits: P(label = 1) >= 0.5
SPLIT_WORDS = {"val": "validation images of the training hospitals", "holdout": "held-out-hospital images",
               "ood_val": "validation-hospital images", "test": "test images"}


def _rule_rows(frame: pd.DataFrame, *, rule: str, meta: ModelMeta) -> pd.DataFrame:
    """The rows train scored for ``rule`` (pipeline/train/domains.py build_train_data), labelled ones only."""
    from pipeline.compat import model_profile
    from pipeline.manifest import domain_values, labelled

    split = RULES[rule].split if rule in RULES else TRAINING_DOMAIN.split
    if split in ("test", "ood_val"):  # the oracle's and OOD validation's rows: a manifest split of their own
        return labelled(frame[frame["split"] == split])
    profile, _ = model_profile({"meta": meta.to_dict()})
    columns = tuple(profile.domain_columns or ("domain",))
    domains = domain_values(frame, columns)
    in_domain = frame["split"].isin(["train", "val"]).to_numpy()
    if split == "holdout":  # leave-one-domain-out: the held-out training domain
        return labelled(frame[in_domain & (domains == meta.holdout_domain).to_numpy()])
    trained = domains.isin(profile.domains or []).to_numpy() if profile.domains else in_domain
    return labelled(frame[(frame["split"] == "val").to_numpy() & trained])


def selection_set_size(*, frame: pd.DataFrame, meta: ModelMeta, rule: str,
                       same_ingest: bool) -> tuple[int | None, str | None]:
    """(number of labelled images train checked ``rule``'s predictions on, reason when unknown). The count comes
    from the threshold train stored (its pooled val rows) for training_domain, else from this manifest when it
    is the model's own training ingest (``same_ingest``); never from another cohort."""
    stored = meta.threshold
    if rule == TRAINING_DOMAIN.name and stored is not None and stored.source.startswith("train: val") and stored.n:
        return stored.n, None
    if not same_ingest:
        return None, "the scored ingest is not the model's training ingest, so its selection set cannot be counted"
    try:
        return int(len(_rule_rows(frame, rule=rule, meta=meta))), None
    except Exception as exc:  # noqa: BLE001 - a missing domain column: the count stays unknown, with why
        return None, f"the selection set cannot be counted here ({exc})"


def constant_at_selection(*, selection: SelectionTruth, meta: ModelMeta, frame: pd.DataFrame,
                          same_ingest: bool) -> ConstantAtSelection | None:
    """The fact above for one model entry's ``selection`` (runs.selection_truth), or None when train's selection
    did not find every evaluation constant."""
    if not selection.constant_predictor:
        return None
    rule = selection.rule
    split = RULES[rule].split if rule in RULES else TRAINING_DOMAIN.split
    n, why = selection_set_size(frame=frame, meta=meta, rule=rule, same_ingest=same_ingest)
    return ConstantAtSelection(rule=rule, split=split, threshold=TRAIN_THRESHOLD, n=n,
                               evaluations=selection.evaluations, n_not_measured=why,
                               text=constant_text(split=split, n=n, evaluations=selection.evaluations))


def constant_text(*, split: str, n: int | None, evaluations: int | None, threshold: float = TRAIN_THRESHOLD) -> str:
    """"at selection, on 6 validation images of the training hospitals at threshold 0.5, every prediction was one
    class (all 3 evaluations)"."""
    count = f"{int(n)} " if isinstance(n, int) else ""
    where = SPLIT_WORDS.get(split, f"{split} images")
    every = f" (all {int(evaluations)} evaluations)" if isinstance(evaluations, int) else ""
    return (f"at selection, on {count}{where} at threshold {threshold:g}, every "
            f"prediction was one class{every}")


def with_constant_fact(selection: SelectionTruth, fact: ConstantAtSelection | None, *,
                       weights_step: int | None) -> EntrySelection:
    """``selection`` plus ``constant_at_selection``; its reason reworded from the fact when nothing was selected."""
    reason = selection.reason
    if fact is not None and selection.step is None:
        reason = f"no checkpoint selected: {fact.text}; model.pt holds the final weights (step {weights_step})"
    return EntrySelection(**{**selection.model_dump(), "reason": reason, "constant_at_selection": fact})
