"""Money and prices, exactly.

Costs are integer micro-dollars (1 USD = 1,000,000) so that sums are exact: a thousand events of
$0.000001 add up to $0.001, not to 0.0009999999. Prices are integer micro-dollars per million
tokens. Dollars come in as JSON numbers (or strings) and are converted through ``Decimal`` of
their decimal text, never through binary float arithmetic.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

MICRO = 1_000_000
MTOK = 1_000_000  # prices are per million tokens

MAX_EVENT_USD = Decimal(100_000)
# A price per million tokens below a tenth of a cent is a per-token price given by mistake
# ($0.000005 for $5/M); above $10,000 is a typo or a per-thousand price. Zero is allowed (free).
MIN_PRICE_USD = Decimal("0.001")
MAX_PRICE_USD = Decimal(10_000)
# Anthropic's cache ratios, used when a new price does not give cache prices.
CACHE_READ_RATIO = Decimal("0.1")
CACHE_WRITE_RATIO = Decimal("1.25")


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"must be a number of dollars, not {type(value).__name__}")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"must be a number of dollars, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"must be a finite number, got {value!r}")
    return number


def usd_to_micro(value: Any, maximum: Decimal = MAX_EVENT_USD) -> int:
    """A dollar amount as whole micro-dollars (half-even rounding below a micro-dollar)."""
    number = to_decimal(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    if number > maximum:
        raise ValueError(f"is implausibly large (${number}; at most ${maximum})")
    return int((number * MICRO).to_integral_value(rounding=ROUND_HALF_EVEN))


def micro_to_usd(micro: int | None) -> float | None:
    """For JSON: int / int is correctly rounded, so the float prints as the exact decimal."""
    return None if micro is None else micro / MICRO


def price_to_micro(value: Any) -> int:
    """A price in USD per million tokens, magnitude-checked, as micro-dollars per million."""
    number = to_decimal(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    if 0 < number < MIN_PRICE_USD:
        raise ValueError(
            f"is ${number} per million tokens, too small to be real: prices are USD per MILLION "
            f"tokens (claude-sonnet-4-5 input is 3, not 0.000003)"
        )
    if number > MAX_PRICE_USD:
        raise ValueError(f"is ${number} per million tokens; at most ${MAX_PRICE_USD} is accepted")
    micro = number * MICRO
    if micro != micro.to_integral_value():
        raise ValueError(f"has more precision than a micro-dollar per million tokens: {value!r}")
    return int(micro)


def scaled(micro_per_mtok: int, ratio: Decimal) -> int:
    return int((Decimal(micro_per_mtok) * ratio).to_integral_value(rounding=ROUND_HALF_EVEN))


def compute_cost_micro(tokens: tuple[int, int, int, int], prices: tuple[int, int, int, int]) -> int:
    """(input, output, cache read, cache write) tokens at micro-dollars per million: one
    rounding (half up) per event, integer arithmetic throughout."""
    total = sum(n * p for n, p in zip(tokens, prices))
    return (total + MTOK // 2) // MTOK
