"""Config-file arguments, big_vision style: "preset,key=value,..." into typed values."""

from __future__ import annotations

from typing import Any, Mapping

import ml_collections


def parse_preset_arg(arg: str | None, presets: Mapping[str, Mapping[str, Any]], default: str,
                     what: str = "config", **extra: Any) -> ml_collections.ConfigDict:
    """A preset's values (plus `extra` defaults) with `key=value` overrides cast to each
    value's type; unknown presets and keys are errors that list the valid ones."""
    parts = [p for p in (arg or "").split(",") if p]
    preset = parts.pop(0) if parts and "=" not in parts[0] else default
    if preset not in presets:
        raise ValueError(f"unknown {what} preset {preset!r}; valid: {', '.join(presets)}")
    values = dict(presets[preset], preset=preset, **extra)
    for part in parts:
        key, _, raw = part.partition("=")
        if key not in values or key == "preset":  # the preset is the first word, not an argument
            valid = sorted(k for k in values if k != "preset")
            raise ValueError(f"unknown {what} argument {key!r}; valid: {', '.join(valid)}")
        kind = type(values[key])
        try:
            values[key] = _parse_bool(raw) if kind is bool else kind(raw)
        except ValueError:
            raise ValueError(f"{what} argument {key}={raw!r}: expected {kind.__name__} "
                             f"(the preset has {values[key]!r})") from None
    return ml_collections.ConfigDict(values)


def _parse_bool(raw: str) -> bool:
    """1/true/yes or 0/false/no (any case); anything else is a ValueError, not a silent False."""
    word = raw.strip().lower()
    if word in ("1", "true", "yes"):
        return True
    if word in ("0", "false", "no"):
        return False
    raise ValueError(raw)
