"""Whole numbers that arrive as text or JSON (log positions, attempts, limits): checked strictly
and in range, so no input reaches ``int()`` or NATS unchecked.

``int()`` alone accepts ``" 7 "``, ``"1_000"``, ``"٣"`` and ``True``; ``str.isdigit`` accepts
``"²"``, which ``int()`` then refuses; an integer of 4,300+ digits raises ``ValueError``; and a
position at or past 2^64 made JetStream refuse the consumer, which the gateway answered as
"NATS did not answer" (503, retry). Here each is a 400 naming the field.
"""

from __future__ import annotations

import re

from schemas.errors import Invalid

MAX_POSITION = 2**63 - 1  # JetStream sequences are uint64; any real log stays far below this
_WHOLE = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only, at most as many as MAX_POSITION has


def whole_number(
    value: object, field: str, *, minimum: int = 0, maximum: int = MAX_POSITION
) -> int:
    """``value`` (an int, or a string of ASCII digits) as an int in ``minimum..maximum``; else
    ``Invalid(field)`` saying what is expected."""
    expected = f"{field} must be a whole number from {minimum} to {maximum}"
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _WHOLE.fullmatch(value):
        number = int(value)
    else:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise Invalid(field, f"{expected}, not {shown}")
    if not minimum <= number <= maximum:
        shown = str(number) if len(str(number)) <= 40 else str(number)[:37] + "..."
        raise Invalid(field, f"{expected}, not {shown}")
    return number
