"""Currencies and amounts in minor units: ISO 4217 from Babel's CLDR data, not a list kept by hand.

A payment API such as Stripe writes 12.00 USD as ``1200`` and 1200 JPY as ``1200``: the
number of minor-unit digits is the currency's, not the field's. A mapping's ``minor_units``
names the field holding the currency; its digits come from ISO 4217 unless the mapping's
``exponents`` overrides them. Currency codes are read case-insensitively (Stripe writes
``usd``).
"""

from __future__ import annotations

import decimal
from functools import cache

from babel.numbers import get_currency_precision, list_currencies

from truesync.config import MinorUnits


@cache
def iso_currencies() -> frozenset[str]:
    """Active ISO 4217 codes."""
    return frozenset(list_currencies())


def digits(units: MinorUnits, currency: str | None) -> int | None:
    """Minor-unit digits of ``currency`` (USD 2, JPY 0, KWD 3), or None for a code ISO 4217 lacks."""
    if currency is None:
        return None
    code = currency.strip().upper()
    if code in units.exponents:
        return units.exponents[code]
    return get_currency_precision(code) if code in iso_currencies() else None


def from_minor(count: object, places: int) -> decimal.Decimal | None:
    """An integer count of minor units as the amount it stands for; None when it is not a whole number."""
    try:
        number = decimal.Decimal(str(count).strip())
    except decimal.InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    return number.scaleb(-places)


def to_minor(amount: str, places: int) -> int:
    """A canonical amount as the integer count of minor units a system stores."""
    return int(decimal.Decimal(amount).scaleb(places).to_integral_value(rounding=decimal.ROUND_HALF_UP))
