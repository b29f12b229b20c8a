"""Which keys of two resolved configurations differ, named as the user types them:
`stage.label_smoothing: 0.0 → 0.1`."""
from __future__ import annotations

from typing import Any

MISSING = "(absent)"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: leaf value}; lists are leaves."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def differences(old: dict, new: dict, limit: int = 8) -> list[str]:
    """`key: old → new` for each leaf that differs (at most `limit`, then how many more)."""
    a, b = flatten(old), flatten(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, MISSING) != b.get(k, MISSING)]
    lines = [f"{k}: {a.get(k, MISSING)} → {b.get(k, MISSING)}" for k in keys[:limit]]
    if len(keys) > limit:
        lines.append(f"… and {len(keys) - limit} more")
    return lines
