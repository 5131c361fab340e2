"""Seeds derived from names, shared by every stage (a neutral module, so evaluate and train need not import the
algorithms package for a hash)."""

from __future__ import annotations

import hashlib
from typing import Any


def seed_hash(*args: Any) -> int:
    """A 31-bit integer from the arguments' text (DomainBed's ``lib/misc.py`` ``seed_hash``): the same arguments give
    the same seed in every process and Python version, unlike ``hash()``."""
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2**31)
