"""How every stage compares names (sites, columns, label values, config keys): one comparison key, so that
'Hôpital Sud', 'hôpital  sud' and its decomposed Unicode form are the same name wherever they meet.

Neutral ground: ingest (site maps, CSV columns, spellings), train (domain columns) and any later stage import it
from here, never from another stage's package.
"""

from __future__ import annotations

import unicodedata


def norm_key(name: object) -> str:
    """The comparison key of a name: Unicode NFKC ('é' composed or not, full-width letters), case-folded, whitespace
    collapsed. Two spellings with the same key are the same name."""
    return " ".join(unicodedata.normalize("NFKC", str(name)).casefold().split())
