"""Names a config gives (sites, columns, site_map keys) matched against the data the way ``site_map`` matches:
case-insensitively and whitespace-tolerant. A name that matches nothing is a ConfigError listing what is present
(``test_sites: [Figure1]`` must not silently train on the 'figure1' hospital); each name resolved only by ignoring
case, whitespace or Unicode form is logged, so the console and summary.json (``config_names_resolved``) say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.errors import ConfigError
from pipeline.names import norm_key


@dataclass
class NameLog:
    """Names resolved by ignoring case/whitespace/Unicode form: (config key, name given, name in the data)."""

    resolved: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, key: str, given: str, resolved: str) -> None:
        if (key, given, resolved) not in self.resolved:
            self.resolved.append((key, given, resolved))

    def as_json(self) -> list[dict[str, str]]:
        return [{"key": k, "given": g, "resolved": r} for k, g, r in self.resolved]


def resolve(given: Iterable[str], present: Iterable[str], *, key: str, log: NameLog,
            aliases: dict[str, str] | None = None) -> list[str]:
    """Each given name as spelled in ``present`` (an exact match wins; ``aliases`` maps other accepted spellings,
    e.g. raw site names through site_map, to a present value). ConfigError naming ``key`` and listing the present
    values when a name matches nothing or matches two values that differ only by case."""
    present = [str(p) for p in present]
    by_norm: dict[str, set[str]] = {}
    for value in present:
        by_norm.setdefault(norm_key(value), set()).add(value)
    alias_norm = {norm_key(k): v for k, v in (aliases or {}).items()}
    out = []
    for name in given:
        if name in present:
            out.append(name)
            continue
        matches = by_norm.get(norm_key(name)) or ({alias_norm[norm_key(name)]} & set(present) if norm_key(name) in alias_norm else set())
        if len(matches) != 1:
            how = "matches nothing" if not matches else f"matches {sorted(matches)} ambiguously"
            raise ConfigError(
                f"ingest: {key} must name values present in the data (compared ignoring case and whitespace), got "
                f"{name!r}, "
                f"which {how}. Present (as in the data, whitespace collapsed): {sorted(set(present))[:40]}. Fix the "
                "spelling in the config."
            )
        resolved = matches.pop()
        log.add(key, name, resolved)
        out.append(resolved)
    return out


def check_site_map(site_map: dict[str, str], raw_sites: Iterable[str], *, log: NameLog | None = None) -> None:
    """Every site_map key names a raw site (CSV site column, DICOM site tag, site constant) seen in the data; a key
    found only by ignoring case/whitespace/Unicode form is logged (key 'site_map') with the spellings it matched."""
    raw_sites = sorted(set(raw_sites))
    by_norm: dict[str, list[str]] = {}
    for site in raw_sites:
        by_norm.setdefault(norm_key(site), []).append(site)
    unused = [k for k in site_map if norm_key(k) not in by_norm]
    if unused:
        raise ConfigError(
            f"ingest: site_map keys must name sites present in the data (compared ignoring case and whitespace), "
            f"got {unused}, which match nothing. Raw site names present (as in the data, whitespace collapsed): "
            f"{raw_sites[:40]}. Fix the keys or remove them."
        )
    for key in site_map:
        matched = by_norm[norm_key(key)]
        if log is not None and key not in matched:
            log.add("site_map", key, " | ".join(matched))
