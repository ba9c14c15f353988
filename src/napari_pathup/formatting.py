"""How sizes and durations read in messages: one format for the CLI, the widgets and the engine's refusals."""

from __future__ import annotations

_UNITS = ("B", "KB", "MB", "GB", "TB")


def format_bytes(n: float | None) -> str:
    """``512 B``, ``3.2 KB``, ``512.0 MB`` or ``1.3 GB`` (binary units, 1 KB = 1024 B); ``? B`` if unknown."""
    if n is None:
        return "? B"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_seconds(seconds: float | None) -> str:
    """``95 s`` below two minutes, ``12.5 min`` below two hours, else ``2.1 h``; ``? s`` if unknown."""
    if seconds is None:
        return "? s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
