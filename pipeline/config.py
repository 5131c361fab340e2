"""YAML -> typed, frozen config models, with errors that name the file, the key and what is allowed.

Every stage declares its config as a subclass of :class:`StrictModel` and loads it with :func:`load_config`.
Unknown keys are rejected (``extra="forbid"``) so a typo never silently falls back to a default.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is an empty mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file must exist, got {str(path)!r}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: top level of {path} must be a mapping, got {type(data).__name__}.")
    return data


def _allowed_values(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """Walk the model's fields along ``loc`` and describe what the last one accepts."""
    current: Any = model
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None and part != loc[-1]:
            continue  # a union member's tag in pydantic's loc ('MetadataMapping'), not a key of the model
        if field is None:
            return "one of " + repr(sorted(current.model_fields))
        current = _inner_model(field.annotation)
    if field is None:
        return None
    annotation = field.annotation
    literal_args = _literal_args(annotation)
    if literal_args:
        return "one of " + repr(list(literal_args))
    return None


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside ``list[X]``, ``dict[str, X]``, ``X | None``; else the annotation itself."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        inner = _inner_model(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _literal_args(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    found: list[Any] = []
    for arg in typing.get_args(annotation):
        found.extend(_literal_args(arg))
    return tuple(found)


def format_validation_error(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = [f"config: {source} is invalid ({model.__name__}):"]
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        key = ".".join(str(p) for p in loc) or "<top level>"
        if err.get("type") == "extra_forbidden":
            parent = loc[:-1]
            allowed = _allowed_values(model, parent + ("__none__",)) if parent else None
            if not parent:
                allowed = "one of " + repr(sorted(model.model_fields))
            lines.append(f"  - {key}: unknown key; allowed keys are {allowed or 'listed in the docs'}.")
            continue
        allowed = _allowed_values(model, loc)
        got = err.get("input")
        msg = err.get("msg", "invalid value")
        hint = f"; must be {allowed}" if allowed else ""
        lines.append(f"  - {key}: {msg}{hint}, got {got!r}.")
    return "\n".join(lines)


def validate_config(model: type[M], data: Mapping[str, Any], source: str = "<config>") -> M:
    """Validate a mapping into ``model``, turning pydantic's errors into a :class:`ConfigError`."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, source)) from None


def load_config(model: type[M], path: str | Path, overrides: Mapping[str, Any] | None = None) -> M:
    """Load ``path`` (YAML) into ``model``; ``overrides`` (e.g. CLI options that were given) win over the file."""
    data = read_yaml(path)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return validate_config(model, data, source=str(path))


def dump_config(config: BaseModel) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (for stage.json)."""
    return config.model_dump(mode="json")
