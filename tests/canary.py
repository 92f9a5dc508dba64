"""A canary secret for connections, and every form it could leak in: raw, URL-encoded both ways,
and base64 (alone and as HTTP basic credentials of the users the tests connect as)."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL

CANARY = "Cn4ry/s3cr:t@x+y=z?&"
FORMS = {
    CANARY,
    quote(CANARY, safe=""),
    quote_plus(CANARY),
    *(base64.b64encode(text.encode()).decode() for text in (CANARY, f":{CANARY}", f"postgres:{CANARY}")),
}


def with_canary(url: URL) -> str:
    """The database URL as a connection holds it: the canary as password (the local PostgreSQL
    server trusts the user, so any password is accepted and sent)."""
    return url.set(password=CANARY).render_as_string(hide_password=False)


def leaks(text: str) -> list[str]:
    """The forms of the canary found in ``text``."""
    return [form for form in FORMS if form in text]
