"""localstripe, a third-party fake Stripe server, run on a free port for a test.

Data is created through localstripe's own Stripe-style API (form-encoded POSTs with
bracketed keys, basic auth with the secret key as the username), never written into it
behind its back. localstripe keeps its objects in memory (``--from-scratch``: nothing is
loaded from an earlier run) and stamps ``created`` with the wall clock in whole seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from truesync.config import Config, load_config
from truesync.sandbox.api import DEFAULT_TOKEN, ServerThread, crm_app, seed
from truesync.sandbox.localairflow import free_port

SECRET_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


class Stripe:
    """A client of one localstripe server, for creating the scenario's customers, charges and refunds."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.auth = (SECRET_KEY, "")

    def post(self, path: str, **data: Any) -> dict[str, Any]:
        response = self.session.post(f"{self.url}{path}", data=_form(data), timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.session.get(f"{self.url}{path}", params=params, timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def card(self, email: str) -> str:
        """A customer with a card that charges succeed on; returns the card's payment method id."""
        customer = self.post("/v1/customers", email=email)["id"]
        method = self.post(
            "/v1/payment_methods", type="card", card={"number": "4242424242424242", "exp_month": 12,
                                                      "exp_year": 2034, "cvc": "123"},
        )["id"]  # fmt: skip
        self.post(f"/v1/payment_methods/{method}/attach", customer=customer)
        return method

    def charge(self, card: str, amount: int, currency: str, capture: bool = True, **metadata: str) -> str:
        return self.post(
            "/v1/charges", amount=amount, currency=currency, source=card, capture=str(capture).lower(),
            metadata=metadata,
        )["id"]  # fmt: skip

    def capture(self, charge: str) -> None:
        self.post(f"/v1/charges/{charge}/capture")

    def refund(self, charge: str, amount: int | None = None) -> str:
        return self.post("/v1/refunds", charge=charge, **({"amount": amount} if amount else {}))["id"]


def _form(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Stripe's form encoding: nested members as ``card[number]``."""
    flat: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}[{name}]" if prefix else name
        if isinstance(value, dict):
            flat.update(_form(value, key))
        else:
            flat[key] = value
    return flat


@contextmanager
def localstripe(workdir: Path) -> Iterator[Stripe]:
    """A localstripe server on a free loopback port, stopped afterwards."""
    port = free_port()
    log = (workdir / "localstripe.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    stripe = Stripe(f"http://127.0.0.1:{port}")
    try:
        _wait_for(stripe, process)
        yield stripe
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _wait_for(stripe: Stripe, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with {process.returncode}")
        try:
            stripe.session.get(f"{stripe.url}/v1/charges", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("localstripe did not answer within 30 s")


EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "stripe"
SANDBOX_CONFIG = Path(__file__).resolve().parents[1] / "include" / "config"
# What localstripe 1.15.10 serves differently from Stripe (docs/configuration.md, "Stripe"):
# charges come oldest first and take one bound, created[gt]; refunds take no created filter.
LOCALSTRIPE = {
    "charges": {"order": "asc", "since_param": "created[gt]", "since_exclusive": True, "until_param": None},
    "refunds": {"since_param": None, "until_param": None},
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` added into ``base``, nested mappings merged member by member."""
    for name, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(name), dict):
            _merge(base[name], value)
        else:
            base[name] = value
    return base


def stripe_config(
    directory: Path, stripe_url: str, crm_url: str, monkeypatch: pytest.MonkeyPatch, dialect: bool = True
) -> Config:
    """The sandbox configuration with the Stripe example added (in localstripe's dialect), connections set."""
    directory.mkdir(parents=True)
    shutil.copytree(SANDBOX_CONFIG / "codes", directory / "codes")
    for section in ("systems", "entities", "mappings", "flows"):
        document = yaml.safe_load((SANDBOX_CONFIG / f"{section}.yaml").read_text())
        _merge(document, yaml.safe_load((EXAMPLE / f"{section}.yaml").read_text()))
        if section == "systems" and dialect:
            for endpoint, dialect in LOCALSTRIPE.items():
                document["systems"]["payments_stripe"]["rest"]["endpoints"][endpoint].update(dialect)
        (directory / f"{section}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_PAYMENTS_STRIPE", stripe_url.replace("//", f"//{SECRET_KEY}:@", 1))
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_CRM_API", crm_url.replace("//", f"//:{DEFAULT_TOKEN}@", 1))
    monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(directory))
    return load_config(directory)


def _deal(ref: str, total: str, currency: str = "USD") -> dict[str, Any]:
    number = ref[1:]
    return {"order_ref": ref, "contact_ref": f"C{number}", "invoice_ref": f"INV-{number}", "stage": "new",
            "amount": total, "balance": total, "currency": currency, "ordered_on": "2026-11-30"}  # fmt: skip


DEALS = [_deal("O1", "120.00"), _deal("O2", "200.00"), _deal("O3", "80.00"), _deal("O4", "50.00"),
         _deal("O5", "1200.00", "JPY")]  # fmt: skip


def next_second() -> datetime:
    """The next whole second (naive UTC): localstripe stamps ``created`` in whole seconds of the wall clock."""
    time.sleep(1 - time.time() % 1 + 0.01)
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def scenario(stripe: Stripe) -> dict[str, tuple[str, str]]:
    """Charges, captures and refunds, each labelled (entity, class) by the id Stripe gave it."""
    card = stripe.card("shopper@example.com")
    refs = {f"O{n}": {"order_id": f"O{n}", "invoice_id": f"INV-{n}", "customer_id": f"C{n}"} for n in range(1, 6)}
    paid = stripe.charge(card, 12000, "usd", **refs["O1"])
    later = stripe.charge(card, 20000, "usd", capture=False, **refs["O2"])
    stripe.capture(later)
    refunded = stripe.charge(card, 8000, "usd", **refs["O3"])
    wrong_invoice = stripe.charge(card, 5000, "usd", **{**refs["O4"], "invoice_id": "INV-3"})
    yen = stripe.charge(card, 1200, "jpy", **refs["O5"])
    no_invoice = stripe.charge(card, 4000, "usd", order_id="O2", customer_id="C2")
    authorised = stripe.charge(card, 1000, "usd", capture=False, **refs["O4"])
    partial = stripe.refund(later, 3000)
    full = stripe.refund(refunded)
    unpaid = stripe.refund(authorised)  # paid back in finance while the CRM still shows the deal open
    labels = {key: ("charge", "missing") for key in (paid, later, refunded, yen, authorised)}
    labels |= {wrong_invoice: ("charge", "mismatched"), no_invoice: ("charge", "invalid")}
    labels |= {partial: ("refund", "missing"), full: ("refund", "missing"), unpaid: ("refund", "mismatched")}
    return labels


@contextmanager
def sandbox_crm() -> Iterator[ServerThread]:
    """The sandbox's REST CRM holding the scenario's deals, on a free loopback port."""
    app = crm_app(DEFAULT_TOKEN)
    seed(app, {"deals": DEALS})
    crm = ServerThread(app).start()
    try:
        yield crm
    finally:
        crm.stop()


def crm_items(crm: ServerThread, collection: str) -> dict[str, dict[str, Any]]:
    """A CRM collection by key, read past the API (no auth, no faults)."""
    items = requests.get(f"{crm.url}/_items/{collection}", timeout=5).json()
    key = "order_ref" if collection == "deals" else "payment_ref"
    return {i[key]: i for i in items}


def crm_writes(crm: ServerThread) -> int:
    """How many writing requests the CRM has answered."""
    stats = requests.get(f"{crm.url}/_stats", timeout=5).json()
    return sum(n for name, n in stats.items() if name.split(" ")[0] in ("POST", "PUT", "PATCH", "DELETE"))


class Listing:
    """A Stripe-shaped listing: newest first (or oldest), ``starting_after`` and ``has_more``, ``created`` bounds.

    Switches break its answers the ways a real API can; every request's query is kept.
    """

    def __init__(self, items: list[dict[str, Any]], order: str = "desc") -> None:
        self.items, self.order = items, order
        self.omit_has_more = False
        self.ignore_after = False
        self.requests: list[dict[str, str]] = []

    def page(self, query: dict[str, str]) -> dict[str, Any]:
        self.requests.append(query)
        rows = sorted(enumerate(self.items), key=lambda p: (p[1]["created"], p[0]), reverse=self.order == "desc")
        chosen = [item for _, item in rows if _in(item["created"], query)]
        after = None if self.ignore_after else query.get("starting_after")
        if after is not None:
            chosen = chosen[[i.get("id") for i in chosen].index(after) + 1 :]
        limit = int(query.get("limit", 10))
        body: dict[str, Any] = {"object": "list", "data": chosen[:limit]}
        if not self.omit_has_more:
            body["has_more"] = len(chosen) > limit
        return body


def _in(created: int, query: dict[str, str]) -> bool:
    bounds = {"created[gte]": created.__ge__, "created[gt]": created.__gt__, "created[lt]": created.__lt__}
    return all(test(int(query[name])) for name, test in bounds.items() if name in query)


class ChargeEvents:
    """What localstripe lacks: Stripe's charges with their events, at times a test chooses.

    ``/v1/events`` (filtered by ``types[]``), ``/v1/charges`` and ``/v1/charges/{id}`` answer
    as Stripe does; refunds are an empty listing.
    """

    def __init__(self) -> None:
        self.charges: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []

    def charge(self, charge: str, at: int, amount: int, currency: str, captured: bool, **metadata: str) -> None:
        record = {"id": charge, "object": "charge", "created": at, "amount": amount, "currency": currency,
                  "captured": captured, "status": "succeeded", "metadata": metadata}  # fmt: skip
        self._changed("charge.succeeded", at, record)

    def capture(self, charge: str, at: int) -> None:
        self._changed("charge.captured", at, {**self.charges[charge], "captured": True})

    def _changed(self, kind: str, at: int, record: dict[str, Any]) -> None:
        self.charges[record["id"]] = record
        number = len(self.events) + 1
        self.events.append({"id": f"evt_{number}", "object": "event", "type": kind, "created": at,
                            "data": {"object": record}})  # fmt: skip

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/events")
        def events(request: Request) -> dict[str, Any]:
            types = set(request.query_params.getlist("types[]"))
            chosen = [e for e in self.events if not types or e["type"] in types]
            return Listing(chosen).page(dict(request.query_params))

        @app.get("/v1/charges")
        def charges(request: Request) -> dict[str, Any]:
            return Listing(list(self.charges.values())).page(dict(request.query_params))

        @app.get("/v1/charges/{charge}")
        def one(charge: str) -> Any:
            found = self.charges.get(charge)
            return found if found is not None else JSONResponse({"error": {"type": "invalid_request_error"}}, 404)

        @app.get("/v1/refunds")
        def refunds(request: Request) -> dict[str, Any]:
            return Listing([]).page(dict(request.query_params))

        return app
