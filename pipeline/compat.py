"""Stage compatibility: a model (or a checkpoint) against the ingest directory a later stage feeds it.

``train`` records what it was trained on under ``meta["trained_on"]`` of every model file and in its resume
checkpoint (:class:`InputProfile`: cache image size and channels, label values and names, domain columns, training
domains, the ingest's inputs hash). ``evaluate`` and ``audit`` call :func:`check_models_compat` before scoring, and
``train --resume`` calls :func:`check_resume_compat`: a mismatch is a DataError (exit 2) naming both values and the
fix. A CNN with global pooling runs on any image size, so without this check a model trained at 32 px silently
scores a 64 px ingest.

Model files written before ``trained_on`` existed: the image size comes from the older top-level ``image_size``
key, channels and classes from the state dict; what cannot be recovered (label names) is skipped with a printed
warning, returned so the caller can count it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.errors import DataError

TRAINED_ON_KEY = "trained_on"


class InputProfile(BaseModel):
    """What a model consumed or an ingest offers; None = not recorded (older files)."""

    model_config = ConfigDict(extra="ignore")

    image_size: int | None = None  # pixels per side of the cached images
    channels: int | None = None  # 1 for the (N, S, S) greyscale cache
    num_classes: int | None = None
    label_values: list[int] | None = None  # label values among labelled rows
    label_names: list[str] | None = None  # distinct manifest label_name of labelled rows (the finding)
    domain_columns: list[str] | None = None
    # what the manifest's ``domain`` column means: the ingest's own domain columns (summary.json, e.g. ['site'] or
    # ['site', 'sex']); a model trained on ``domain`` of one meaning must not be scored on another
    ingest_domain_columns: list[str] | None = None
    domains: list[str] | None = None  # training domains (a model) or all domains of train/val (an ingest)
    ingest_hash: str | None = None  # cache.json inputs_hash
    ingest_dir: str | None = None


def ingest_profile(ingest_dir: str | Path, *, domain_columns: Sequence[str] = ("domain",)) -> InputProfile:
    """The profile of an ingest directory: cache.json and the manifest's labelled rows.

    Raises DataError (via the manifest reader and cache) when the directory is not an ingest output. Domain columns
    missing from the manifest leave ``domains`` None (the comparison names them).
    """
    from pipeline.cache import ImageCache
    from pipeline.manifest import domain_values, labelled, read_manifest

    cache = ImageCache.open(ingest_dir)
    frame = read_manifest(ingest_dir)
    known = labelled(frame)
    shape = cache.images.shape
    in_domain = frame[frame["split"].isin(["train", "val"])]
    present = all(c in frame.columns for c in domain_columns)
    return InputProfile(
        image_size=cache.size,
        channels=1 if len(shape) == 3 else int(shape[1]),
        label_values=sorted(int(v) for v in known["label"].unique()),
        label_names=sorted(str(v) for v in known["label_name"].unique()),
        domain_columns=[c for c in domain_columns if c in frame.columns],
        domains=sorted(domain_values(in_domain, tuple(domain_columns)).unique()) if present else None,
        ingest_domain_columns=_ingest_domain_columns(ingest_dir),
        ingest_hash=cache.info.get("inputs_hash"),
        ingest_dir=str(ingest_dir),
    )


def _ingest_domain_columns(ingest_dir: str | Path) -> list[str] | None:
    """The ingest's domain columns as its summary.json (pipeline/artefacts/ingest_summary.py) records them (None: no
    summary, or one that does not validate, e.g. an older one)."""
    from pipeline.artefacts.ingest_summary import IngestSummary

    try:
        return list(IngestSummary.load(Path(ingest_dir)).domain_columns)
    except (DataError, OSError):
        return None  # an absent or unreadable summary cannot tell the meaning; the domains check below still runs


def _domain_meaning_mismatch(model: InputProfile, ingest: InputProfile) -> bool:
    """True when the model trained on the manifest's ``domain`` column and the ingest gives it another meaning."""
    if "domain" not in (model.domain_columns or []):
        return False
    if model.ingest_domain_columns is None or ingest.ingest_domain_columns is None:
        return False
    return [c.lower() for c in model.ingest_domain_columns] != [c.lower() for c in ingest.ingest_domain_columns]


def model_profile(payload: dict[str, Any]) -> tuple[InputProfile, list[str]]:
    """The profile a model file records, completed from its state dict for older files; also what is unknown.
    ``payload``: the model file's dict (``meta`` validated as pipeline/artefacts/model_meta.py ModelMeta)."""
    from pipeline.artefacts.model_meta import ModelMeta  # it imports InputProfile from here

    meta = ModelMeta.from_meta(payload.get("meta") or {}, where="the model file")
    profile = meta.trained_on or InputProfile()
    state = payload.get("state_dict") or {}  # torch's state dict, not an artefact: may be absent in a bare payload
    update: dict[str, Any] = {}
    if profile.image_size is None and meta.image_size is not None:
        update["image_size"] = int(meta.image_size)  # train wrote this key before trained_on existed
    if profile.channels is None:
        convs = [v for v in state.values() if getattr(v, "ndim", 0) == 4]
        in_chans = (payload.get("model_config") or {}).get("in_chans")
        update["channels"] = int(convs[0].shape[1]) if convs else in_chans
    if profile.num_classes is None and "classifier.weight" in state:
        update["num_classes"] = int(state["classifier.weight"].shape[0])
    if profile.domain_columns is None and meta.domain_columns is not None:
        update["domain_columns"] = list(meta.domain_columns)
    if profile.domains is None and meta.training_domains is not None:
        update["domains"] = [str(d) for d in meta.training_domains]  # train's top-level key, older files too
    profile = profile.model_copy(update=update)
    unknown = [k for k in ("image_size", "channels", "label_names") if getattr(profile, k) is None]
    return profile, unknown


def _mismatch(stage: str, what: str, ingest_value: Any, model_value: Any, ingest_dir: Any, model: str, fix: str):
    return DataError(f"{stage}: {what} of the ingest must match the model's, got {ingest_value!r} in {ingest_dir} "
                     f"but {model} was trained on {model_value!r}. {fix}")


def compare(model: InputProfile, ingest: InputProfile, *, stage: str, model_name: str, strict: bool = False) -> None:
    """Raise DataError on the first mismatch; ``strict`` (resume) also requires the same domains and ingest hash.
    Fields None on the model's side (not recorded) are not compared."""
    where = ingest.ingest_dir
    if model.image_size is not None and model.image_size != ingest.image_size:
        raise _mismatch(stage, "image size (px)", ingest.image_size, model.image_size, where, model_name,
                        f"Use an ingest made at `cxr-fishr ingest ... --size {model.image_size}`, or retrain on "
                        "this one.")
    if model.channels is not None and model.channels != ingest.channels:
        raise _mismatch(stage, "image channels", ingest.channels, model.channels, where, model_name,
                        "Use a model built with model.in_chans equal to the cache's channels.")
    if model.num_classes is not None and ingest.label_values:
        outside = [v for v in ingest.label_values if not 0 <= v < model.num_classes]
        if outside:
            raise _mismatch(stage, "label values", ingest.label_values, list(range(model.num_classes)), where,
                            model_name, "Use a model trained on the same label set.")
    if model.label_names is not None and ingest.label_names:
        foreign = sorted(set(ingest.label_names) - set(model.label_names))
        if foreign:
            raise _mismatch(stage, "label names (the finding labelled)", ingest.label_names, model.label_names,
                            where, model_name, "Score the model on an ingest labelled for the same finding.")
    missing = [c for c in model.domain_columns or [] if c not in (ingest.domain_columns or [])]
    if missing:
        raise _mismatch(stage, "domain columns", ingest.domain_columns, model.domain_columns, where, model_name,
                        f"Re-ingest with the manifest columns {missing}.")
    if _domain_meaning_mismatch(model, ingest):
        raise _mismatch(stage, "domain columns behind the manifest's 'domain' column", ingest.ingest_domain_columns,
                        model.ingest_domain_columns, where, model_name,
                        f"Use an ingest made with domain_columns: {model.ingest_domain_columns}, or retrain on this "
                        "one.")
    if strict:
        for key in ("domains", "ingest_hash"):
            if getattr(model, key) is not None and getattr(model, key) != getattr(ingest, key):
                raise _mismatch(stage, key.replace("_", " "), getattr(ingest, key), getattr(model, key), where,
                                model_name, "Resume with the ingest directory the run started on, or train into a "
                                            "new --out.")


def _warn(stage: str, model_name: str, unknown: list[str], ingest: InputProfile, *, echo: bool = True) -> str:
    text = (f"warning: {stage}: {model_name} records no {', '.join(unknown)} (a model file from before "
            f"trained_on); those cannot be checked against {ingest.ingest_dir} "
            f"({ingest.image_size} px, {ingest.channels} channel(s)). Retrain to record them.")
    if echo:
        print(text, file=sys.stderr)
    return text


def absent_domains_warning(model: InputProfile, ingest_dir: str | Path, *, stage: str, model_name: str,
                           echo: bool = True, frame: Any = None) -> str | None:
    """A warning naming the model's training domains that no row of the ingest has (any split), else None: the
    domains then mean something else here (e.g. 'Alpha' vs 'Alpha|M'), or the ingest holds only new sites.
    ``frame``: the ingest's manifest when the caller already read it (else it is read here)."""
    from pipeline.manifest import domain_values, read_manifest

    if not model.domains:
        return None
    columns = tuple(model.domain_columns or ("domain",))
    if frame is None:
        frame = read_manifest(ingest_dir)
    if any(c not in frame.columns for c in columns):
        return None  # compare() already refused missing columns
    present = set(domain_values(frame, columns).astype(str))
    absent = sorted(d for d in model.domains if d not in present)
    if not absent:
        return None
    text = (f"{stage}: {model_name} trained on domains {absent} ({list(columns)}) that no row of "
            f"{ingest_dir} has (its domains: {sorted(present)[:10]}); its threshold and training-site roles cannot "
            "be matched here. Expected when this ingest holds only new sites; otherwise re-ingest with the model's "
            "domain columns.")
    if echo:
        print(text, file=sys.stderr)
    return text


# splits scored as hospitals the model never saw (an ingest's test_sites / ood_val_sites): a row of a training domain
# there would report in-distribution accuracy as "at the test hospital"
NEW_SITE_SPLITS = ("test", "ood_val")
_IN_DISTRIBUTION_FIX = {"evaluate": "--split val", "audit": "`split: val` in the audit config"}


def _domains_are_sites(model: InputProfile) -> bool:
    """Whether the model's domains say which hospital a row is from: the site is one of the domain's parts (e.g.
    ['site'] or ['site', 'position']; the manifest's ``domain`` column by the ingest's domain columns, where the model
    records them; unrecorded: the ingest default ['site']). A domain of other parts only (e.g. ['position']) cannot
    tell a training hospital from a new one."""
    parts = [c.lower() for c in model.domain_columns or ["domain"]]
    if parts == ["domain"]:
        if model.ingest_domain_columns is None:
            return True
        parts = [c.lower() for c in model.ingest_domain_columns]
    return "site" in parts


def check_new_sites(model: InputProfile, scored: Any, *, split: str, stage: str, model_name: str,
                    ingest_dir: str | Path, holdout_domain: str | None = None) -> None:
    """DataError (exit 2) when ``split`` is scored as new hospitals (``test``, ``ood_val``) but a row of ``scored``
    (the split's scored rows, a manifest frame) is of one of the model's training domains (``model.domains``, the
    hold-out of a leave-one-domain-out run excluded: train never trained on it).

    Not checked: other splits (``val``/``train`` measure in-distribution by design), models that record no training
    domains, and domains without the site among their parts (:func:`_domains_are_sites`)."""
    from pipeline.manifest import domain_values

    if split not in NEW_SITE_SPLITS or not model.domains or scored is None or len(scored) == 0:
        return
    columns = tuple(model.domain_columns or ("domain",))
    if any(c not in scored.columns for c in columns) or not _domains_are_sites(model):
        return  # missing columns: compare() already refused them
    trained = sorted(set(model.domains) - {holdout_domain})
    domains = domain_values(scored, columns).astype(str)
    hit = domains.isin(trained).to_numpy()
    if not hit.any():
        return
    sites = sorted(scored.loc[hit, "site"].astype(str).unique()) if "site" in scored.columns else None
    where = f"sites {sites}, domains {sorted(domains[hit].unique())}" if sites else \
        f"domains {sorted(domains[hit].unique())}"
    raise DataError(
        f"{stage}: split {split!r} must hold only sites {model_name} never trained on (it is reported as new "
        f"hospitals), got {int(hit.sum())} rows of its training {where} (domain columns {list(columns)}) in "
        f"{ingest_dir}; the model trained on {trained}. Re-ingest with {split}_sites that are not among the "
        f"model's training sites, or measure in-distribution with {_IN_DISTRIBUTION_FIX.get(stage, '--split val')}.")


def check_models_compat(*, checkpoints: Sequence[str | Path], ingest_dir: str | Path, stage: str,
                        split: str | None = None, scored: Any = None) -> list[str]:
    """Check each model file against ``ingest_dir`` (DataError on a mismatch) and, given the scored ``split`` and
    its rows ``scored`` (a manifest frame), that a new-hospital split holds none of the model's training domains
    (:func:`check_new_sites`); return the printed warnings (older model files, training domains absent from the
    ingest): the caller counts them."""
    from pipeline.manifest import read_manifest
    from pipeline.models.network import read_torch_file

    warnings: list[str] = []
    ingest: InputProfile | None = None
    frame = None  # the ingest's manifest, read once for every checkpoint's absent-domains check
    for checkpoint in checkpoints:
        payload = read_torch_file(checkpoint, stage=stage)
        profile, unknown = model_profile(payload)
        if profile.ingest_domain_columns is None and profile.ingest_dir and Path(profile.ingest_dir).is_dir():
            # a model file from before ingest_domain_columns: its training ingest, where still present, tells
            profile = profile.model_copy(update={"ingest_domain_columns": _ingest_domain_columns(profile.ingest_dir)})
        if ingest is None or tuple(profile.domain_columns or ()) != tuple(ingest.domain_columns or ()):
            ingest = ingest_profile(ingest_dir, domain_columns=profile.domain_columns or ("domain",))
        compare(profile, ingest, stage=stage, model_name=str(checkpoint))
        if split is not None:
            check_new_sites(profile, scored, split=split, stage=stage, model_name=str(checkpoint),
                            ingest_dir=ingest_dir, holdout_domain=(payload.get("meta") or {}).get("holdout_domain"))
        if unknown:
            warnings.append(_warn(stage, str(checkpoint), unknown, ingest))
        # not printed here: evaluate and audit count it in their warnings and the commands print those
        if profile.domains and frame is None:
            frame = read_manifest(ingest_dir)
        absent = absent_domains_warning(profile, ingest_dir, stage=stage, model_name=str(checkpoint), echo=False,
                                        frame=frame)
        if absent:
            warnings.append(absent)
    return warnings


def check_resume_compat(*, recorded: dict[str, Any] | None, current: InputProfile, checkpoint: str | Path) -> list[str]:
    """A resume checkpoint's ``trained_on`` against the current ingest (strict: same domains and hash too).
    Returns the warning (not printed: train prints its warnings together) for a checkpoint without one."""
    if recorded is None:
        return [_warn("train", str(checkpoint), ["trained_on"], current, echo=False)]
    compare(InputProfile.model_validate(recorded), current, stage="train", model_name=str(checkpoint), strict=True)
    return []
