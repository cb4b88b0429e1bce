"""Human forms of sizes, rates, durations and statuses for the console (text, never colour alone)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arsl_tui.domain.jobs import JobStatus

_LONG_HEX = re.compile(r"[0-9a-f]{32,}")

# One glyph per status, all single-width text-presentation characters that every terminal font has.
STATUS_GLYPHS: dict[str, str] = {
    "done": "✓",
    "ok": "✓",
    "valid": "✓",
    "running": "►",
    "sending": "►",
    "validating": "…",
    "packing": "►",
    "verifying": "►",
    "finishing": "►",
    "paused": "‖",
    "cancelled": "■",
    "cancelling": "■",
    "failed": "✗",
    "error": "✗",
    "invalid": "✗",
    "interrupted": "▲",
    "warning": "▲",
    "resumable": "▲",
    "idle": "○",
    "pending": "○",
    "none": "○",
    "creating": "…",
    "completed": "✓",
    "terminating": "■",
    "terminated": "■",
    "abnormal": "✗",
    "pass": "✓",
    "fail": "✗",
    "alarm": "✗",
    "insufficient_data": "○",
    "attention": "▲",
    "unknown": "?",
    "acknowledged": "✓",
    "silenced": "‖",
}
_SPARK = "▁▂▃▄▅▆▇█"
NO_DATA = "·"
"""A sparkline cell for a period without data."""


def status_text(status: str) -> str:
    """`✓ done`, `‖ paused`: the glyph and the word, so status never rests on colour."""
    return f"{STATUS_GLYPHS.get(status, '·')} {status}"


def metric(number: float | None, digits: int = 4) -> str:
    """A metric value: `0.9712`, `NaN`, or `–` when there is none."""
    if number is None:
        return "–"
    if not math.isfinite(number):
        return "NaN"
    return f"{number:.{digits}f}"


def sparkline(values: Sequence[float | None], width: int) -> str:
    """The last `width` values as bars from lowest to highest; `·` where a period had no data.

    Scaled between the smallest and largest value shown, so a flat series is a flat line.
    """
    shown = list(values)[-width:] if width > 0 else []
    finite = [number for number in shown if number is not None and math.isfinite(number)]
    if not finite:
        return NO_DATA * len(shown)
    low, high = min(finite), max(finite)
    cells = []
    for number in shown:
        if number is None or not math.isfinite(number):
            cells.append(NO_DATA)
        elif high == low:
            cells.append(_SPARK[len(_SPARK) // 2 - 1])
        else:
            cells.append(_SPARK[round((number - low) / (high - low) * (len(_SPARK) - 1))])
    return "".join(cells)


def count(value: int) -> str:
    return f"{value:,}"


def size(num_bytes: float) -> str:
    """Bytes in decimal units: 950 B, 38.2 MB, 1.07 GB."""
    if num_bytes < 1000:
        return f"{int(num_bytes)} B"
    for unit in ("kB", "MB", "GB", "TB"):
        num_bytes /= 1000
        if num_bytes < 1000 or unit == "TB":
            return f"{num_bytes:.1f} {unit}"
    raise AssertionError("unreachable")


def rate(bytes_per_s: float) -> str:
    return f"{size(bytes_per_s)}/s" if bytes_per_s > 0 else "–"


def duration(seconds: float | None) -> str:
    """`42 s`, `3 min 05 s`, `2 h 07 min`; `–` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def percent(done: int, total: int) -> str:
    return f"{100 * done / total:5.1f} %" if total > 0 else "  – %"


def bar(done: float, total: float, width: int) -> str:
    """A text progress bar: filled cells `█`, the rest `░` (readable in 16 colours and without colour)."""
    if width <= 0:
        return ""
    fraction = min(1.0, max(0.0, done / total)) if total > 0 else 0.0
    filled = int(fraction * width)
    return "█" * filled + "░" * (width - filled)


def timestamp(epoch_s: float) -> str:
    """Local date and minute of an epoch time."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch_s))


def short_id(identifier: str, length: int = 12) -> str:
    return identifier[:length] if identifier else "–"


def shorten_ids(text: str, keep: int = 12) -> str:
    """Long hex ids (manifest sha256s in keys and paths) cut to their first `keep` digits and `…`."""
    return _LONG_HEX.sub(lambda match: match.group(0)[:keep] + "…", text)


def tail(text: str, width: int) -> str:
    """The end of a long path, which says the most: `…/ArASL_Database_54K_Final`."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def error_text(error: Exception) -> str:
    """An exception as one line for the console: its message, else its type's name."""
    return str(error) or type(error).__name__


def phase_word(status: JobStatus) -> str:
    """A job's phase as the lower-case word `status_text` takes."""
    return status.phase.value.lower()
