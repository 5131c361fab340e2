"""One exception family for every user-facing failure.

The CLI turns a ``CxrFishrError`` into its message and exit code 2; anything else is a bug and keeps its traceback.
Messages follow ``<stage>: <param> must be <expected>, got <value!r> (<where>). <fix>``.
"""

from __future__ import annotations


class CxrFishrError(Exception):
    """An error caused by the user's input, config or data (not a bug)."""


class ConfigError(CxrFishrError):
    """A config file or option is invalid: the message names the file, the key and what is allowed."""


class DataError(CxrFishrError):
    """Input data cannot be used as given (empty manifest, one training domain, missing cache, ...)."""


class TrainingError(CxrFishrError):
    """Training cannot go on (NaN loss, ...); the message names the step and the loss term."""
