"""Currencies and amounts in minor units, by ISO 4217 itself (the ``iso4217`` package ships its table).

A payment API such as Stripe writes 12.00 USD as ``1200`` and 1200 JPY as ``1200``: the
number of minor-unit digits is the currency's, not the field's. A mapping's ``minor_units``
names the field holding the currency; its digits are ISO 4217's minor unit (USD 2, JPY 0,
KWD 3) unless the mapping's ``exponents`` overrides them, for a system that writes a
currency its own way (Stripe writes ISK with two decimals, ISO gives it none). A code
without a minor unit (gold, XXX) or outside ISO 4217 has no digits. Codes are read
case-insensitively (Stripe writes ``usd``).
"""

from __future__ import annotations

import decimal
from functools import cache

from iso4217 import Currency

from truesync.config import MinorUnits

# Amounts are exact up to 1,000 digits, PostgreSQL's widest declared ``numeric(p, s)``. Python's default
# context keeps 28: it would round a longer amount in ``scaleb`` and fail it in ``quantize``. A longer
# one is no amount truesync can carry: the mapping refuses it (``core.canonical``).
DIGITS = decimal.Context(prec=1000)


@cache
def iso_currencies() -> frozenset[str]:
    """The codes of ISO 4217's current list."""
    return frozenset(Currency.__members__)


def digits(units: MinorUnits, currency: str | None) -> int | None:
    """Minor-unit digits of ``currency`` (USD 2, JPY 0, KWD 3), or None when it has none or is unknown."""
    if currency is None:
        return None
    code = currency.strip().upper()
    if code in units.exponents:
        return units.exponents[code]
    return Currency[code].exponent if code in iso_currencies() else None


def from_minor(count: object, places: int) -> decimal.Decimal | None:
    """An integer count of minor units as the amount it stands for; None when it is not a whole number."""
    try:
        number = decimal.Decimal(str(count).strip())
    except decimal.InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    return number.scaleb(-places, context=DIGITS)


def to_minor(amount: str, places: int) -> int | None:
    """A canonical amount as the integer count of minor units a system stores; None for a fraction of one."""
    count = decimal.Decimal(amount).scaleb(places, context=DIGITS)
    return int(count) if count == count.to_integral_value() else None
