"""Kept for existing imports: the definition of shortcut-conflicting and aligned images is part of the protocol,
in pipeline/protocol/shortcuts.py (import it from there)."""

from pipeline.protocol.shortcuts import (
    DEFAULT_ATTRIBUTES,
    UNKNOWN_VALUES,
    ShortcutDirection,
    associated_values,
    attribute_values,
    conflict_aligned,
    direction_problem,
    estimate_direction,
    estimate_directions,
    headline_attribute,
    label_strings,
    label_values,
    labelled_mask,
    shortcut_attributes,
    skipped_attribute_warning,
)

__all__ = ["DEFAULT_ATTRIBUTES", "UNKNOWN_VALUES", "ShortcutDirection", "associated_values", "attribute_values",
           "conflict_aligned", "direction_problem", "estimate_direction", "estimate_directions", "headline_attribute",
           "label_strings", "label_values", "labelled_mask", "shortcut_attributes", "skipped_attribute_warning"]
