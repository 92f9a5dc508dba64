"""Who is calling, and what they may do: shared by truesync's plugin apps (reports, dashboard).

Airflow mounts plugin FastAPI apps without its authentication, so every route checks the caller
itself, as Airflow's own API does: the UI's ``_token`` cookie or an ``Authorization: Bearer``
header, then the auth manager's answer for the flow's DAG. It fails closed: no valid credential
is 401, no right is 403.

State-changing requests also prove they come from truesync's own pages (CSRF): the request's
``Origin`` (or ``Referer``) is this server, and the form carries a token derived from the caller's
own credential, which another site can neither read nor guess.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status

READ, EDIT = "GET", "PUT"
CSRF_FIELD = "csrf"


async def _user(request: Request) -> Any:
    """The caller, authenticated as Airflow's own API does it (imported here: only the API server needs it)."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


User = Annotated[Any, Depends(_user)]


def base_path() -> str:
    """The path part of ``[api] base_url``: the UI and the plugin apps live below it."""
    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="")).path.rstrip("/")


def may(user: Any, dag_id: str | None, method: str = READ) -> bool:
    """Whether the user may read the DAG's runs (``READ``) or change the DAG (``EDIT``); ``None``: every DAG."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    entity = DagAccessEntity.RUN if method == READ else None
    details = DagDetails(id=dag_id)
    return bool(get_auth_manager().is_authorized_dag(method=method, access_entity=entity, details=details, user=user))


def require(user: Any, dag_id: str | None, method: str = READ) -> None:
    """Refuse with 403 unless :func:`may`."""
    if not may(user, dag_id, method):
        what = "read these runs" if method == READ else "act on this flow"
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"not allowed to {what}")


def credential(request: Request) -> str:
    """The caller's raw Airflow token: the bearer header, else the UI's cookie."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN, "")


def csrf_token(request: Request) -> str:
    """The token truesync's forms carry: keyed by the caller's own credential."""
    return hmac.new(credential(request).encode(), b"truesync-csrf", hashlib.sha256).hexdigest()


def check_csrf(request: Request, token: str | None) -> None:
    """Refuse a state-changing request from another origin or without the caller's form token."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused: wrong or missing Origin")
    if not token or not hmac.compare_digest(token, csrf_token(request)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused: missing or wrong form token")


def said(request: Request, text: str) -> dict[str, str]:
    """Query parameters carrying a message to the next page, signed for the caller, so a link
    from elsewhere cannot put its own words in the dashboard's status line.
    """
    return {"done": text, "sig": _signature(request, text)}


def said_here(request: Request) -> str | None:
    """The message this request carries, if the caller's own earlier request signed it."""
    text, sig = request.query_params.get("done"), request.query_params.get("sig")
    if text is None or not sig or not hmac.compare_digest(sig, _signature(request, text)):
        return None
    return text


def _signature(request: Request, text: str) -> str:
    return hmac.new(credential(request).encode(), b"truesync-said:" + text.encode(), hashlib.sha256).hexdigest()
