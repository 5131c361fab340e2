"""Command-line flags checked before a stage starts, so an invalid value is a ConfigError naming the flag and its
valid values ("audit: --max-images must be greater than or equal to 1, got -1"), never "config: <defaults> is
invalid" or a file the user did not write. Imports pydantic only when called (pipeline/commands imports only typer
and the standard library at import time)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def check_config_flags(command: str, model: type, given: Mapping[str, tuple[str, Any]], *, prefix: str = "") -> None:
    """ConfigError for the first flag whose value the config field it overrides rejects.

    ``model``: the stage's config model (a pydantic ``BaseModel`` class, e.g. pipeline/audit/config.py
    AuditConfig); ``given``: config key (a field of ``model``) -> (flag as typed, value); a None value (flag not
    given) is skipped. The field's own type and constraints decide, so the flag accepts what the config key does.
    ``prefix``: where ``model`` sits in the config file, for the message (synth's ``sites[*].``)."""
    from typing import Annotated

    from pydantic import TypeAdapter, ValidationError

    from pipeline.errors import ConfigError

    for key, (flag, value) in given.items():
        if value is None:
            continue
        field = model.model_fields[key]
        kind = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        try:
            TypeAdapter(kind).validate_python(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            valid = [str(v) for v in _literals(field.annotation) if v is not None]
            must = str(error.get("msg", "invalid")).replace("Input should be", "must be")
            if valid and error.get("type") == "literal_error":
                must = f"must be one of {', '.join(valid)}"
            elif error.get("type") == "too_short":  # an empty list, e.g. --methods ','
                of = f" of {', '.join(valid)}" if valid else ""
                must = f"must name at least {(error.get('ctx') or {}).get('min_length', 1)}{of}"
            elif not must.startswith("must"):
                must = f"must be valid ({must})"
            raise ConfigError(f"{command}: {flag} {must}, got {error.get('input', value)!r} "
                              f"(it sets the config key {prefix + key!r}).") from None


def check_flag(command: str, flag: str, value: Any, *, ok: bool, must: str, fix: str = "") -> None:
    """ConfigError "<command>: <flag> must <must>, got <value>. <fix>" unless ``ok`` (a flag no config key holds:
    --workers, --seeds, ...); None (flag not given) is never checked by the callers."""
    from pipeline.errors import ConfigError

    if not ok:
        raise ConfigError(f"{command}: {flag} must {must}, got {value!r}." + (f" {fix}" if fix else ""))


def _literals(annotation: Any) -> tuple[Any, ...]:
    """The values of the Literal inside ``annotation`` (``list[Literal[...]]``, ``Literal[...] | None``), else ()."""
    import typing

    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return tuple(v for arg in typing.get_args(annotation) for v in _literals(arg))
