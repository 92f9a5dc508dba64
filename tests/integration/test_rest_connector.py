"""The REST connector against the sandbox CRM served by uvicorn on localhost, faults switched on.

No mocks: every request crosses a real socket to a real HTTP server, and the faults are
the server's, so retries, timeouts, paging and idempotency are exercised as in production.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from truesync.config import EntityMapping, load_config
from truesync.connectors.errors import ConfigurationProblem, RecordsRejected, SystemUnavailable
from truesync.connectors.rest.connection import HttpConnection, http_connection
from truesync.connectors.rest.members import time_param
from truesync.connectors.rest.paging import check_same_origin, listing
from truesync.connectors.rest.session import BadResponse, RateLimiter
from truesync.connectors.rest.settings import RestConfig
from truesync.connectors.rest.system import RestSystem
from truesync.sandbox.api import ServerThread, crm_app, seed

TOKEN = "s3cret-token-never-shown"
DAY = datetime(2026, 11, 1)
N = 60


class Crm:
    """A sandbox CRM server and a connector to it with short timeouts."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server
        config = load_config()
        self.settings: RestConfig = config.systems["crm_api"].settings.model_copy(deep=True)
        self.settings.read_timeout = 1.0
        self.settings.backoff_factor = 0.05
        self.contacts = config.entity_mapping("crm_api", "customer")
        self.deals = config.entity_mapping("crm_api", "order")
        self.page(10)

    def page(self, size: int, style: str = "cursor") -> None:
        self.settings.endpoints["contacts"].pagination.page_size = size
        self.settings.endpoints["contacts"].pagination.style = style

    def connector(self, token: str = TOKEN) -> RestSystem:
        return RestSystem("crm_api", self.settings, HttpConnection(self.server.url, None, token))

    def faults(self, **switches: Any) -> None:
        requests.post(f"{self.server.url}/_faults", json=switches, timeout=5).raise_for_status()

    def stats(self) -> Counter:
        return Counter(requests.get(f"{self.server.url}/_stats", timeout=5).json())

    def items(self, collection: str = "contacts") -> list[dict[str, Any]]:
        return requests.get(f"{self.server.url}/_items/{collection}", timeout=5).json()


def _contacts() -> list[dict[str, Any]]:
    """N contacts whose change times come in tied groups of four: page boundaries split them."""
    return [
        {"external_id": f"C{i:03d}", "email": f"c{i}@example.com", "display_name": f"Contact {i}",
         "tier": "GOLD", "modified_at": (DAY + timedelta(minutes=i // 4)).isoformat()}
        for i in range(N)
    ]  # fmt: skip


@pytest.fixture
def crm() -> Iterator[Crm]:
    app = crm_app(TOKEN)
    seed(app, {"contacts": _contacts()})
    server = ServerThread(app).start()
    yield Crm(server)
    server.stop()


def keys_of(connector: RestSystem, mapping: EntityMapping, size: int = 7) -> list[str]:
    return [k for frame in connector.extract(mapping, DAY, DAY + timedelta(days=1), size) for k in frame["external_id"]]


def naive_keys(connector: RestSystem, mapping: EntityMapping) -> list[str]:
    """What a reader that just follows the pages would get: no tie groups, no dedupe."""
    endpoint = connector.api.config.endpoints[mapping.table]
    params = {endpoint.since_param: DAY.isoformat(), endpoint.until_param: (DAY + timedelta(days=1)).isoformat()}
    return [item["external_id"] for item in listing(connector.api, endpoint, params)]


# --- paging -----------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["page", "offset", "cursor", "link"])
def test_split_ties_and_repeated_items_lose_nothing_and_duplicate_nothing(crm: Crm, style: str) -> None:
    crm.page(10, style)
    connector = crm.connector()
    expected = sorted(c["external_id"] for c in _contacts())
    assert sorted(keys_of(connector, crm.contacts)) == expected

    crm.faults(tie_split=True, repeat_item=True)
    naive = naive_keys(connector, crm.contacts)
    assert set(naive) != set(expected), "the faults must bite a reader that just follows the pages"
    assert len(naive) != len(set(naive)), "the server repeats items across pages"
    got = keys_of(connector, crm.contacts)
    assert sorted(got) == expected


def test_window_is_half_open_on_the_change_time(crm: Crm) -> None:
    connector = crm.connector()
    start, end = DAY + timedelta(minutes=2), DAY + timedelta(minutes=5)
    got = [k for f in connector.extract(crm.contacts, start, end, 100) for k in f["external_id"]]
    assert sorted(got) == [f"C{i:03d}" for i in range(8, 20)]


def test_fetch_finds_records_by_external_key_in_batches(crm: Crm) -> None:
    crm.settings.endpoints["contacts"].lookup.max_keys = 3
    wanted = [f"C{i:03d}" for i in range(0, 20, 2)] + ["NOPE"]
    frame = crm.connector().fetch(crm.contacts, wanted)
    assert sorted(frame["external_id"]) == wanted[:-1]
    assert crm.stats()["GET /contacts"] == 4


# --- transient faults -------------------------------------------------------------------------


def test_429_500_and_slow_answers_are_retried_and_nothing_is_lost(crm: Crm) -> None:
    crm.settings.retries = 8  # the faults below all hit the first request: seven retries of it
    crm.faults(rate_limit=2, retry_after=1, server_error=3, slow=2, delay=2.0)
    got = keys_of(crm.connector(), crm.contacts)
    assert sorted(got) == sorted(c["external_id"] for c in _contacts())
    stats = crm.stats()
    assert (stats["fault.rate_limit"], stats["fault.server_error"], stats["fault.slow"]) == (2, 3, 2)


def test_retry_after_is_honoured_on_429_and_503(crm: Crm) -> None:
    crm.settings.backoff_factor, crm.settings.backoff_jitter = 0, 0  # any wait comes from Retry-After alone
    crm.faults(rate_limit=1, unavailable=1, retry_after=2)
    began = time.monotonic()
    assert len(keys_of(crm.connector(), crm.contacts)) == N
    assert time.monotonic() - began >= 2 * 2, "Retry-After: 2 was honoured on the 429 and on the 503"
    stats = crm.stats()
    assert (stats["fault.rate_limit"], stats["fault.unavailable"]) == (1, 1)


def test_retries_exhausted_fail_as_unavailable_with_system_endpoint_and_status(crm: Crm) -> None:
    crm.settings.retries = 2
    crm.faults(server_error=10)
    with pytest.raises(SystemUnavailable) as caught:
        keys_of(crm.connector(), crm.contacts)
    assert "system 'crm_api' GET /contacts: status 500" in str(caught.value)


def test_no_answer_at_all_is_unavailable(crm: Crm) -> None:
    crm.settings.retries = 1
    crm.faults(slow=5, delay=2.0)
    with pytest.raises(SystemUnavailable, match="system 'crm_api' GET /contacts: no answer after 1 retries"):
        keys_of(crm.connector(), crm.contacts)


def test_rate_limit_is_a_ceiling_shared_by_threads() -> None:
    limiter = RateLimiter(50)

    def burst() -> None:
        for _ in range(13):
            limiter.wait()

    threads = [threading.Thread(target=burst) for _ in range(2)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - began >= 25 / 50 - 0.01, "26 starts at 50 per second span at least 0.5 s"


def test_configured_rate_limit_spaces_the_requests(crm: Crm) -> None:
    crm.settings.rate_limit = 10
    crm.page(5)
    began = time.monotonic()
    keys_of(crm.connector(), crm.contacts)
    requests_made = crm.stats()["GET /contacts"]
    assert requests_made >= 12
    assert time.monotonic() - began >= (requests_made - 1) / 10 - 0.05


# A worker of its own: a process that opens the CRM with the given ceiling and makes ``count`` requests.
BURST = """
import sys
from truesync.connectors.rest.connection import HttpConnection
from truesync.connectors.rest.settings import RestConfig
from truesync.connectors.rest.system import RestSystem
from truesync.store import Store
from truesync.store.rate_limits import shared_ceilings

url, token, store, settings, count = sys.argv[1:]
system = RestSystem("crm_api", RestConfig.model_validate_json(settings), HttpConnection(url, None, token))
if store:
    system.share_ceiling(shared_ceilings(Store(store)))
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(count)):
    system.api.request("GET", "/contacts", params={"limit": 1})
"""


def _bursts(crm: Crm, store: str, workers: int, count: int) -> float:
    """``workers`` processes make ``count`` requests each, all starting together; returns the seconds taken."""
    args = [crm.server.url, TOKEN, store, crm.settings.model_dump_json(), str(count)]
    procs = [
        subprocess.Popen([sys.executable, "-c", BURST, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    began = time.monotonic()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    return time.monotonic() - began


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_the_rate_limit_holds_across_worker_processes_through_the_store(
    crm: Crm, store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two worker processes at a ceiling of 20 requests per second: through the store's shared
    ceiling the API sees at most 20 (+1 for a slot used up to one interval late) in any second;
    with each process's own ceiling, as before, it sees about 40."""
    url = request.getfixturevalue("postgres_url") if store == "postgresql" else f"sqlite:///{tmp_path / 'store.db'}"
    crm.settings.rate_limit = 20
    seconds = _bursts(crm, url.render_as_string(False) if store == "postgresql" else url, workers=2, count=30)
    busiest = crm.stats()["busiest_second"]
    assert busiest <= 21 and seconds >= 59 / 20 - 0.1, (busiest, seconds)
    alone = _bursts(crm, "", workers=2, count=30)
    assert crm.stats()["busiest_second"] >= 30 and alone < seconds, "per process, the two workers double the rate"


# --- writes -----------------------------------------------------------------------------------


def _row(key: str, **changes: Any) -> dict[str, Any]:
    row = {"external_id": key, "email": f"{key.lower()}@example.com", "display_name": "New", "phone": None,
           "street_address": "1 Road", "dob": "1990-01-02", "tier": "SILVER", "segment": None,
           "modified_at": datetime(2026, 11, 2)}  # fmt: skip
    return {**row, **changes}


def test_a_lost_post_answer_and_its_retry_create_exactly_one_record(crm: Crm) -> None:
    crm.faults(lose_response=1, delay=2.0)
    assert crm.connector().write(crm.contacts, [_row("NEW1")], 100) == 1
    made = [i for i in crm.items() if i["external_id"] == "NEW1"]
    stats = crm.stats()
    assert stats["POST /contacts"] == 2, "the first answer was lost, so the POST was sent again"
    assert stats["idempotent_replays"] == 1
    assert len(made) == 1 and made[0]["email"] == "new1@example.com"


def test_a_post_without_idempotency_key_is_never_retried(crm: Crm) -> None:
    """The plain session's Retry does not allow POST: only the keyed session retries writes."""
    crm.settings.retries = 3
    connector = crm.connector()
    crm.faults(lose_response=1, delay=2.0)
    with pytest.raises(SystemUnavailable):
        connector.api.request("POST", "/contacts", body=_row("NOKEY", modified_at=None))
    assert crm.stats()["POST /contacts"] == 1


def test_update_sends_only_the_fields_that_differ_and_nothing_when_equal(crm: Crm) -> None:
    connector = crm.connector()
    current = {k: v for k, v in crm.items()[5].items() if k not in ("id", "modified_at")}
    connector.write(crm.contacts, [{**current, "modified_at": datetime(2026, 11, 2)}], 100)
    assert crm.stats()["updated.contacts"] == 0
    connector.write(crm.contacts, [{**current, "email": "changed@example.com"}], 100)
    after = crm.items()[5]
    assert after["email"] == "changed@example.com" and after["display_name"] == current["display_name"]
    stats = crm.stats()
    assert stats[f"PATCH /contacts/{after['id']}"] == 1 and stats["POST /contacts"] == 0


def test_native_upsert_creates_then_updates_by_key(crm: Crm) -> None:
    connector = crm.connector()
    deal = {"order_ref": "O-1", "contact_ref": "C001", "stage": "new", "amount": "10.00", "currency": "EUR"}
    connector.write(crm.deals, [deal], 10)
    connector.write(crm.deals, [{**deal, "stage": "paid"}], 10)
    deals = crm.items("deals")
    assert len(deals) == 1 and deals[0]["stage"] == "paid"
    assert crm.stats()["PUT /deals/by-key/O-1"] == 2


def test_the_crm_keeps_a_deals_balance_and_keeps_a_balance_written_to_it(crm: Crm) -> None:
    """The sandbox CRM's bookkeeping, which a balance the books own is repaired against (``reconcile``)."""
    connector, payments = crm.connector(), crm.settings.endpoints["payments"]
    deal = {"order_ref": "O-1", "contact_ref": "C001", "stage": "new", "amount": "10.00", "currency": "EUR"}
    connector.write(crm.deals, [deal], 10)

    def pay(key: str, kind: str, state: str, amount: str) -> str:
        body = {"payment_ref": key, "deal_ref": "O-1", "kind": kind, "state": state, "amount": amount}
        connector.api.request("POST", payments.path, body=body)
        return crm.items("deals")[0]["balance"]

    assert crm.items("deals")[0]["balance"] == "10.00", "a new deal owes its amount"
    assert pay("P1", "payment", "captured", "10.00") == "0.00"
    assert pay("R1", "refund", "authorised", "4.00") == "0.00", "a refund not paid out moves nothing"
    connector.write(crm.deals, [{**deal, "balance": "7.00"}], 10)
    assert crm.items("deals")[0]["balance"] == "7.00", "a balance written to the deal is kept"
    assert pay("R2", "refund", "refunded", "4.00") == "11.00", "and later payments move it from there"
    connector.write(crm.deals, [{**deal, "amount": "12.00", "balance": "11.00"}], 10)
    assert crm.items("deals")[0]["balance"] == "13.00", "a changed amount moves it by the change"


# --- bad input --------------------------------------------------------------------------------


def _assert_secret_free(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc) + caplog.text
    assert TOKEN not in text


def test_a_page_that_is_not_json_fails_with_system_endpoint_and_status(
    crm: Crm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    crm.faults(not_json=1)
    with pytest.raises(BadResponse) as caught:
        keys_of(crm.connector(), crm.contacts)
    assert "system 'crm_api' GET /contacts: status 200, response is not JSON (text/html" in str(caught.value)
    assert isinstance(caught.value, ConfigurationProblem), "not retried: the task fails at once"
    _assert_secret_free(caught.value, caplog)


def test_an_unexpected_status_fails_with_system_endpoint_and_status(crm: Crm, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    crm.faults(bad_status=1)
    with pytest.raises(BadResponse, match=r"system 'crm_api' GET /contacts: unexpected status 418") as caught:
        crm.connector().fetch(crm.contacts, ["C001"])
    _assert_secret_free(caught.value, caplog)


def test_a_refused_token_is_named_by_status_never_shown(crm: Crm, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + TOKEN
    with pytest.raises(BadResponse, match="unexpected status 401") as caught:
        keys_of(crm.connector(token=wrong), crm.contacts)
    text = "".join(traceback.format_exception(caught.value)) + caplog.text
    assert wrong not in text and TOKEN not in text
    assert TOKEN not in repr(crm.connector()) and TOKEN not in crm.connector().describe()


def test_items_without_key_or_change_time_are_yielded_to_be_quarantined(crm: Crm) -> None:
    requests.post(f"{crm.server.url}/_seed/contacts", json=[
        {"email": "nokey@example.com", "modified_at": DAY.isoformat()}, {"external_id": "UNTIMED"},
    ], timeout=5).raise_for_status()  # fmt: skip
    connector = crm.connector()
    frames = list(connector.extract(crm.contacts, DAY, DAY + timedelta(days=1), 1000))
    assert sum(f["external_id"].isna().sum() for f in frames) == 1
    crm.settings.endpoints["contacts"].incomplete_params = {"incomplete": "true"}
    rows = [r for f in connector.unwindowed_rows(crm.contacts, 10) for r in f.to_dict("records")]
    assert sorted(str(r["external_id"]) for r in rows) == ["None", "UNTIMED"]


def test_a_next_link_to_another_host_is_refused(crm: Crm) -> None:
    connector = crm.connector()
    with pytest.raises(BadResponse, match="another host"):
        check_same_origin(connector.api, "http://elsewhere.example/contacts?offset=10", "/contacts")


def test_connection_uri_gives_base_url_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SOME_API", "https://bot:p%40ss@api.example.com:8443/v2/")
    conn = http_connection("some_api")
    assert (conn.base_url, conn.login, conn.password) == ("https://api.example.com:8443/v2", "bot", "p@ss")
    assert "p@ss" not in repr(conn)


def test_a_misspelt_fault_switch_is_refused(crm: Crm) -> None:
    answer = requests.post(f"{crm.server.url}/_faults", json={"rate_limt": 1}, timeout=5)
    assert answer.status_code == 422 and crm.stats()["fault.rate_limit"] == 0


# --- keyset paging, tie groups, short and empty pages -------------------------------------------


def _serve(contacts: list[dict[str, Any]]) -> Crm:
    app = crm_app(TOKEN)
    seed(app, {"contacts": contacts})
    return Crm(ServerThread(app).start())


def _tied() -> list[dict[str, Any]]:
    """Five contacts at one change time, then fifteen sharing the next: a tie group larger than a page."""
    return [
        {"external_id": f"T{i:03d}", "email": f"t{i}@example.com", "tier": "GOLD",
         "modified_at": (DAY + timedelta(minutes=1 if i >= 5 else 0)).isoformat()}
        for i in range(20)
    ]  # fmt: skip


@pytest.mark.parametrize("style", ["page", "offset", "cursor", "link"])
def test_a_tie_group_larger_than_a_page_is_read_once_by_key(style: str) -> None:
    crm = _serve(_tied())
    try:
        crm.page(10, style)
        crm.faults(tie_split=True, repeat_item=True)
        assert sorted(keys_of(crm.connector(), crm.contacts)) == [f"T{i:03d}" for i in range(20)]
        assert crm.stats()["GET /contacts"] <= 6, "the group is read once, not once per page boundary"
    finally:
        crm.server.stop()


@pytest.mark.parametrize("style", ["page", "offset", "cursor", "link"])
def test_a_tie_group_larger_than_a_page_without_key_ordering_fails_rather_than_loses(style: str) -> None:
    crm = _serve(_tied())
    try:
        crm.page(10, style)
        crm.settings.endpoints["contacts"].key_after_param = None
        crm.faults(tie_split=True)
        with pytest.raises(BadResponse) as caught:
            keys_of(crm.connector(), crm.contacts)
        message = str(caught.value)
        assert (
            "system 'crm_api' GET /contacts: more than 10 items share change time 2026-11-01T00:01:00+00:00" in message
        )
        assert "no key ordering" in message
    finally:
        crm.server.stop()


def test_an_item_updated_between_pages_makes_no_other_item_leave_the_window(crm: Crm) -> None:
    end = DAY + timedelta(days=1)
    crm.page(10, "offset")
    crm.faults(touch=1)
    naive = naive_keys(crm.connector(), crm.contacts)
    touched = {i["external_id"] for i in crm.items() if i["modified_at"] >= end.isoformat()}
    assert len(touched) == 1 and len(set(naive) | touched) == N - 1, "offset paging skips an item that never moved"

    crm.faults(touch=2)
    got = set(keys_of(crm.connector(), crm.contacts))
    moved = {i["external_id"] for i in crm.items() if i["modified_at"] >= end.isoformat()}
    assert len(moved) == 3 and crm.stats()["fault.touch"] == 3
    assert got | moved == {c["external_id"] for c in _contacts()}, "what left the window is in a later one"


@pytest.mark.parametrize("style", ["page", "offset"])
def test_an_api_capping_the_page_size_below_ours_is_read_to_the_end(crm: Crm, style: str) -> None:
    crm.page(10, style)
    crm.settings.endpoints["contacts"].total_field = None  # only an empty page can end the listing
    crm.settings.endpoints["contacts"].lookup.max_keys = 20
    crm.faults(max_page=4)
    assert sorted(keys_of(crm.connector(), crm.contacts)) == sorted(c["external_id"] for c in _contacts())
    wanted = [f"C{i:03d}" for i in range(20)]
    assert sorted(crm.connector().fetch(crm.contacts, wanted)["external_id"]) == wanted


@pytest.mark.parametrize("style", ["cursor", "link"])
def test_an_empty_page_with_a_next_token_does_not_end_the_listing(crm: Crm, style: str) -> None:
    crm.page(10, style)
    crm.settings.endpoints["contacts"].lookup.max_keys = 20
    crm.faults(empty_page=1)
    wanted = [f"C{i:03d}" for i in range(20)]
    assert sorted(crm.connector().fetch(crm.contacts, wanted)["external_id"]) == wanted
    assert crm.stats()["fault.empty_page"] == 1


# --- writes refused one by one, idempotency across runs -----------------------------------------


def test_a_record_the_api_refuses_is_reported_and_the_others_are_written(
    crm: Crm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    crm.faults(reject=["BAD1", "C003"])
    rows = [_row("NEW1"), _row("BAD1"), _row("C003", email="other@example.com"), _row("NEW2")]
    with pytest.raises(RecordsRejected) as caught:
        crm.connector().write(crm.contacts, rows, 100, run_id="run-1")
    assert sorted(caught.value.rejected) == ["BAD1", "C003"]
    assert caught.value.rejected["BAD1"] == "system 'crm_api' POST /contacts: unexpected status 422"
    assert "PATCH /contacts/" in caught.value.rejected["C003"] and "status 422" in caught.value.rejected["C003"]
    assert {"NEW1", "NEW2"} <= {i["external_id"] for i in crm.items()}
    _assert_secret_free(caught.value, caplog)


def test_a_record_deleted_and_created_again_by_a_later_run_is_created(crm: Crm) -> None:
    connector = crm.connector()
    connector.write(crm.contacts, [_row("AGAIN")], 100, run_id="run-1")
    connector.write(crm.contacts, [_row("AGAIN")], 100, run_id="run-1")  # same run: looked up, nothing to send
    made = next(i for i in crm.items() if i["external_id"] == "AGAIN")
    requests.delete(f"{crm.server.url}/_items/contacts/{made['id']}", timeout=5).raise_for_status()
    connector.write(crm.contacts, [_row("AGAIN")], 100, run_id="run-2")
    assert [i["external_id"] for i in crm.items()].count("AGAIN") == 1
    stats = crm.stats()
    assert stats["created.contacts"] == 2 and stats["idempotent_replays"] == 0


# --- bodies that are not what the endpoint promised ---------------------------------------------


def test_a_body_that_is_not_an_object_fails_with_system_endpoint_and_status(crm: Crm) -> None:
    crm.settings.endpoints["contacts"].path = "/_items/contacts"  # an admin path answering a bare list
    with pytest.raises(
        BadResponse, match=r"GET /_items/contacts: status 200, the body is not an object holding 'items'"
    ):
        crm.connector().fetch(crm.contacts, ["C001"])


def test_an_item_without_the_update_id_fails_with_system_endpoint_and_status(crm: Crm) -> None:
    crm.settings.endpoints["contacts"].id_field = "uuid"
    with pytest.raises(BadResponse, match=r"GET /contacts: status 200, an item has no 'uuid' member"):
        crm.connector().write(crm.contacts, [_row("C001")], 100)


def test_window_bounds_are_sent_as_utc_with_an_offset() -> None:
    assert time_param(DAY, "iso") == "2026-11-01T00:00:00+00:00"
    assert (
        time_param(datetime(2026, 11, 1, 1, tzinfo=timezone(timedelta(hours=1))), "iso") == "2026-11-01T00:00:00+00:00"
    )


# --- connections --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "base_url"),
    [
        ('{"conn_type": "http", "host": "https://api.example.com", "password": "tok"}', "https://api.example.com"),
        ('{"conn_type": "http", "host": "api.example.com", "schema": "https", "password": "tok"}',
         "https://api.example.com"),
        ('{"conn_type": "http", "host": "api.example.com/v2", "schema": "https", "port": 8443, "password": "tok"}',
         "https://api.example.com:8443/v2"),
        ('{"conn_type": "https", "host": "api.example.com", "extra": {"base_path": "/v3/"}, "password": "tok"}',
         "https://api.example.com/v3"),
        ("http://:tok@https%3A%2F%2Fapi.example.com/", "https://api.example.com"),
        ("https://:tok@api.example.com/v2/", "https://api.example.com/v2"),
    ],
)  # fmt: skip
def test_airflow_http_connections_keep_the_https_scheme(
    monkeypatch: pytest.MonkeyPatch, value: str, base_url: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SOME_API", value)
    conn = http_connection("some_api")
    assert (conn.base_url, conn.password) == (base_url, "tok")


def test_credentials_over_plain_http_go_only_to_loopback() -> None:
    settings = load_config().systems["crm_api"].settings
    with pytest.raises(ConfigurationProblem, match="credentials go only over https") as caught:
        RestSystem("crm_api", settings, HttpConnection("http://api.example.com", None, TOKEN))
    assert TOKEN not in str(caught.value)
    for host in ("127.0.0.1", "localhost", "[::1]"):
        RestSystem("crm_api", settings, HttpConnection(f"http://{host}:8080", None, TOKEN))
