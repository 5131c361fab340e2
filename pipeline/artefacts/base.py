"""The base of every stage output's typed model (one pydantic model per artefact: docs/design/artefacts.md).

A stage builds its artefact as a model and writes it with :meth:`Artefact.write`; every reader loads it with
:meth:`Artefact.load`, which checks the schema version and names the file, the field and the fix when the file does
not match. Strict JSON: a non-finite float is refused when the model is built (the writer puts ``None`` and a reason
under the nearest ``not_measured``), so no ``NaN`` token ever reaches a file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_serializer

from pipeline.errors import DataError


def validation_problems(exc: ValidationError, *, limit: int = 5) -> str:
    """The first ``limit`` problems of a pydantic ValidationError as ``field.path: message; ...`` (for the
    DataErrors that name the file and its bad fields)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()[:limit])


class Block(BaseModel):
    """A nested part of an artefact: unknown keys are refused (a typo is an error, not a silently dropped number),
    floats must be finite or None.

    ``OMIT_WHEN_NONE`` names the optional keys a writer leaves out of the file when they do not apply (e.g. the
    oracle rule's ``label`` in selection.json): None there means "key absent", so a file round-trips exactly.
    ``OMIT_WHEN_UNSET`` names keys that are absent unless given, even as None (history.jsonl's ``holdout_acc``:
    present, possibly null, only for a run with a held-out domain)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()
    OMIT_WHEN_UNSET: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict) and (self.OMIT_WHEN_NONE or self.OMIT_WHEN_UNSET):
            fields = type(self).model_fields
            for name in self.OMIT_WHEN_NONE:
                key = fields[name].alias or name
                if data.get(key, 0) is None:
                    del data[key]
            for name in self.OMIT_WHEN_UNSET - self.model_fields_set:
                data.pop(fields[name].alias or name, None)
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be finite or None (a number, or None with the reason under not_measured), got {value}")
        return value


class Artefact(Block):
    """A whole file written by one stage. Subclasses set ``FILENAME``, ``STAGE`` and ``SCHEMA_VERSION`` and declare a
    ``schema_version: int`` field defaulting to it (the version a reader of an older or newer file is told about)."""

    FILENAME: ClassVar[str] = ""
    STAGE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1

    @classmethod
    def path_in(cls, directory: str | Path) -> Path:
        return Path(directory) / cls.FILENAME

    @classmethod
    def from_dict(cls, data: Any, *, where: str | Path = "<memory>") -> Self:
        """Validate already-parsed JSON; a DataError names ``where``, the schema version and the first bad fields."""
        if not isinstance(data, dict):
            raise DataError(f"{cls.STAGE}: {where} must hold a JSON object ({cls.__name__}), got "
                            f"{type(data).__name__}. Re-run `cxr-fishr {cls.STAGE}`.")
        version = data.get("schema_version", cls.SCHEMA_VERSION)
        if version != cls.SCHEMA_VERSION:
            raise DataError(f"{cls.STAGE}: {where} has schema_version {version!r}, this version of cxr-fishr reads "
                            f"{cls.SCHEMA_VERSION}. Re-run `cxr-fishr {cls.STAGE}` to rewrite it.")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise DataError(f"{cls.STAGE}: {where} does not match {cls.__name__} (schema_version "
                            f"{cls.SCHEMA_VERSION}): {problems}. Re-run `cxr-fishr {cls.STAGE}` to rewrite it.") from None

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read and validate ``path`` (a file, or a stage directory holding ``FILENAME``)."""
        path = Path(path)
        if path.is_dir():
            path = cls.path_in(path)
        if not path.is_file():
            raise DataError(f"{cls.STAGE}: {path} does not exist. Run `cxr-fishr {cls.STAGE}` first, or point to "
                            "its output directory.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{cls.STAGE}: {path} is not valid JSON ({exc.msg} at line {exc.lineno}). Re-run "
                            f"`cxr-fishr {cls.STAGE}` to rewrite it.") from None
        return cls.from_dict(data, where=path)

    def to_json_dict(self) -> dict[str, Any]:
        """The file's content: JSON types only, field names as written (aliases)."""
        return self.model_dump(mode="json", by_alias=True)

    def write(self, path: str | Path) -> Path:
        """Write atomically as strict JSON (``path``: a file, or a directory to write ``FILENAME`` into)."""
        from pipeline.stage import write_json_atomic

        path = Path(path)
        if path.is_dir() or path.suffix != ".json":
            path = self.path_in(path)
        write_json_atomic(path, self.to_json_dict())
        return path
