"""REST listings paged by the last item's id (Stripe's shape), against a Stripe-shaped server on localhost.

The server lists newest first (or oldest first), pages with ``starting_after`` and
``has_more``, filters on ``created[gte]``, ``created[gt]`` and ``created[lt]`` in epoch
seconds, and can wrap records in events. Its switches break the answers the ways a real
API can. localstripe itself is used in ``test_stripe.py``; this server makes ties, orders
and broken answers exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import yaml
from fastapi import FastAPI, Request
from stripe_server import EXAMPLE, Listing

from truesync.config import EntityConfig, EntityMapping
from truesync.connectors.errors import ConfigurationProblem
from truesync.connectors.rest.connection import HttpConnection
from truesync.connectors.rest.session import BadResponse
from truesync.connectors.rest.settings import EndpointConfig, RestConfig
from truesync.connectors.rest.system import RestSystem
from truesync.core.canonical import EPOCH, to_canonical
from truesync.sandbox.api import ServerThread

T0 = datetime(2026, 11, 2, 9, 0, 0)


def epoch(ts: datetime) -> int:
    return int((ts - EPOCH).total_seconds())


def serve(listing: Listing) -> ServerThread:
    app = FastAPI()

    @app.get("/v1/things")
    def things(request: Request) -> dict[str, Any]:
        return listing.page(dict(request.query_params))

    return ServerThread(app).start()


@pytest.fixture
def server() -> Iterator[dict[str, Any]]:
    holder: dict[str, Any] = {}
    yield holder
    if "thread" in holder:
        holder["thread"].stop()


MAPPING = EntityMapping(
    table="things", key="id", cursor="created",
    fields={"thing_id": "id", "invoice": "metadata.invoice_id", "first_amount": "refunds.data[0].amount"},
)  # fmt: skip


def connector(holder: dict[str, Any], listing: Listing, **endpoint: Any) -> RestSystem:
    holder["thread"] = thread = serve(listing)
    settings = {"path": "/v1/things", "items_field": "data", "time_format": "epoch_s",
                "pagination": {"style": "after_id", "page_size": 2}, "since_param": "created[gte]",
                "until_param": "created[lt]", "order": "desc"}  # fmt: skip
    config = RestConfig(
        auth={"type": "none"}, retries=0, endpoints={"things": EndpointConfig(**{**settings, **endpoint})}
    )
    return RestSystem("stripe_like", config, HttpConnection(thread.url, None, None))


def extract(system: RestSystem, start: datetime, end: datetime, mapping: EntityMapping = MAPPING) -> pd.DataFrame:
    frames = list(system.extract(mapping, start, end, 1000))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=mapping.columns)


def _things(groups: int = 3, size: int = 3) -> list[dict[str, Any]]:
    """Items in tie groups: ``size`` items share each second, so two-item pages split every group."""
    return [
        {"id": f"th_{g}{i}", "created": epoch(T0) + g, "metadata": {"invoice_id": f"INV-{g}{i}"},
         "refunds": {"data": [{"amount": 100 * i}]}}
        for g in range(groups) for i in range(size)
    ]  # fmt: skip


def test_a_newest_first_listing_paged_after_the_last_id_reads_ties_split_by_pages_once(server: dict) -> None:
    listing = Listing(_things())
    system = connector(server, listing)
    frame = extract(system, T0, T0 + timedelta(seconds=3))
    assert sorted(frame["id"]) == sorted(i["id"] for i in listing.items)
    assert frame.columns.tolist() == MAPPING.columns
    assert frame.loc[frame["id"] == "th_12", "metadata.invoice_id"].item() == "INV-12"
    assert frame.loc[frame["id"] == "th_12", "refunds.data[0].amount"].item() == 200
    assert frame.loc[frame["id"] == "th_12", "created"].item() == (T0 + timedelta(seconds=1)).isoformat()
    first = listing.requests[0]
    assert (first["created[gte]"], first["created[lt]"]) == (str(epoch(T0)), str(epoch(T0) + 3))
    assert [r.get("starting_after") for r in listing.requests] == [None, "th_21", "th_12", "th_10", "th_01"]


def test_a_window_cuts_the_listing_on_both_sides(server: dict) -> None:
    system = connector(server, Listing(_things()))
    frame = extract(system, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))
    assert sorted(frame["id"]) == ["th_10", "th_11", "th_12"]


def test_a_window_is_cut_by_truesync_when_the_api_ignores_its_bounds(server: dict) -> None:
    system = connector(server, Listing(_things()), since_param="from", until_param="to")
    frame = extract(system, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))
    assert sorted(frame["id"]) == ["th_10", "th_11", "th_12"]


def test_without_a_start_parameter_a_newest_first_read_stops_past_the_window(server: dict) -> None:
    listing = Listing(_things(groups=6))
    system = connector(server, listing, since_param=None, until_param=None)
    frame = extract(system, T0 + timedelta(seconds=3), T0 + timedelta(seconds=4))
    assert sorted(frame["id"]) == ["th_30", "th_31", "th_32"]
    assert len(listing.requests) == 5, "read on past the first page older than the window"
    assert all("created[gte]" not in r for r in listing.requests)


def test_an_oldest_first_listing_with_an_exclusive_start_stops_at_the_window_end(server: dict) -> None:
    listing = Listing(_things(groups=6), order="asc")
    system = connector(server, listing, order="asc", since_param="created[gt]", since_exclusive=True, until_param=None)
    frame = extract(system, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))
    assert sorted(frame["id"]) == ["th_10", "th_11", "th_12"]
    assert listing.requests[0]["created[gt]"] == str(epoch(T0))
    assert len(listing.requests) == 2


def test_a_start_between_whole_seconds_is_rounded_up_never_down(server: dict) -> None:
    listing = Listing(_things())
    system = connector(server, listing)
    frame = extract(system, T0 + timedelta(milliseconds=500), T0 + timedelta(seconds=3))
    assert listing.requests[0]["created[gte]"] == str(epoch(T0) + 1)
    assert sorted(frame["id"]) == [f"th_{g}{i}" for g in (1, 2) for i in range(3)]


def test_epoch_milliseconds(server: dict) -> None:
    items = [{"id": f"ms_{n}", "created": epoch(T0) * 1000 + 250 * n} for n in range(8)]
    listing = Listing(items)
    system = connector(server, listing, time_format="epoch_ms", since_param=None, until_param=None)
    frame = extract(system, T0 + timedelta(milliseconds=500), T0 + timedelta(milliseconds=1500))
    assert sorted(frame["id"]) == ["ms_2", "ms_3", "ms_4", "ms_5"]
    assert frame.loc[frame["id"] == "ms_3", "created"].item() == (T0 + timedelta(milliseconds=750)).isoformat()


def test_member_paths_that_lead_nowhere_read_as_null_and_the_item_is_kept(server: dict) -> None:
    items = [{"id": "th_a", "created": epoch(T0)}, {"id": "th_b", "created": epoch(T0), "metadata": None},
             {"id": "th_c", "created": epoch(T0), "refunds": {"data": []}}, {"created": epoch(T0)}]  # fmt: skip
    frame = extract(connector(server, Listing(items)), T0, T0 + timedelta(seconds=1))
    assert len(frame) == 4
    assert frame["metadata.invoice_id"].isna().all() and frame["refunds.data[0].amount"].isna().all()
    assert frame["id"].isna().sum() == 1, "an item without its key is kept, to be quarantined"


def test_a_body_without_has_more_fails_naming_system_endpoint_and_field(server: dict) -> None:
    listing = Listing(_things())
    listing.omit_has_more = True
    system = connector(server, listing)
    with pytest.raises(BadResponse, match=r"system 'stripe_like' GET /v1/things: status 200, field 'has_more'"):
        extract(system, T0, T0 + timedelta(seconds=3))


def test_more_items_after_one_without_an_id_fail_rather_than_restart(server: dict) -> None:
    items = _things()
    del items[7]["id"]  # the last item of the first page, newest first
    with pytest.raises(BadResponse, match=r"more items follow but its last item has no 'id' to list after"):
        extract(connector(server, Listing(items)), T0, T0 + timedelta(seconds=3))


def test_an_api_ignoring_the_last_id_fails_instead_of_reading_one_page_forever(server: dict) -> None:
    listing = Listing([{"id": f"th_{n}", "created": epoch(T0)} for n in range(5)])
    listing.ignore_after = True
    with pytest.raises(BadResponse, match=r"GET /v1/things: 'starting_after' did not move the listing on"):
        list(connector(server, listing).scan(MAPPING, 100))


def test_a_listing_out_of_its_order_fails(server: dict) -> None:
    system = connector(server, Listing(_things(), order="asc"))
    with pytest.raises(BadResponse, match=r"not ordered by 'created', newest first"):
        extract(system, T0, T0 + timedelta(seconds=3))


def test_desc_needs_a_listing_paged_by_the_last_id() -> None:
    with pytest.raises(ValueError, match="order desc needs pagination style after_id"):
        EndpointConfig(path="/v1/things", order="desc")


# --- envelopes (events) -------------------------------------------------------------------------


def _event(number: int, created: int, record: Any, kind: str = "thing.updated") -> dict[str, Any]:
    return {"id": f"evt_{number}", "object": "event", "type": kind, "created": created, "data": {"object": record}}


def test_envelopes_give_the_record_and_the_events_own_change_time(server: dict) -> None:
    made = epoch(T0) - 86_400
    events = [
        _event(1, epoch(T0), {"id": "th_1", "created": made, "metadata": {"invoice_id": "INV-1"}}),
        _event(2, epoch(T0) + 1, {"id": "th_1", "created": made, "metadata": {"invoice_id": "INV-1b"}}),
        _event(3, epoch(T0) + 1, {"id": "th_2", "created": made, "metadata": {"invoice_id": "INV-2"}}),
        _event(4, epoch(T0) + 2, {"id": "th_2", "created": made, "metadata": {"invoice_id": "INV-2"}}),
    ]
    system = connector(server, Listing(events), record_path="data.object")
    frame = extract(system, T0, T0 + timedelta(seconds=3))
    rows = sorted(zip(frame["id"], frame["metadata.invoice_id"], frame["created"], strict=True))
    assert rows == [
        ("th_1", "INV-1b", (T0 + timedelta(seconds=1)).isoformat()),
        ("th_2", "INV-2", (T0 + timedelta(seconds=2)).isoformat()),
    ], "newest first: a record's older events are dropped, its newest state wins"


def test_same_instant_events_with_other_content_are_both_kept_for_the_duplicate_check(server: dict) -> None:
    events = [
        _event(1, epoch(T0), {"id": "th_1", "metadata": {"invoice_id": "A"}}),
        _event(2, epoch(T0), {"id": "th_1", "metadata": {"invoice_id": "B"}}),
        _event(3, epoch(T0), {"id": "th_2", "metadata": {"invoice_id": "C"}}),
        _event(4, epoch(T0), {"id": "th_2", "metadata": {"invoice_id": "C"}}),
    ]
    frame = extract(connector(server, Listing(events), record_path="data.object"), T0, T0 + timedelta(seconds=1))
    assert sorted(zip(frame["id"], frame["metadata.invoice_id"], strict=True)) == [
        ("th_1", "A"), ("th_1", "B"), ("th_2", "C"),
    ]  # fmt: skip


def test_an_envelope_without_its_record_fails_naming_the_event(server: dict) -> None:
    events = [_event(1, epoch(T0), {"id": "th_1"}), {"id": "evt_2", "created": epoch(T0), "data": {}}]
    with pytest.raises(BadResponse, match=r"GET /v1/things: item 'evt_2' holds no object at 'data.object'"):
        extract(connector(server, Listing(events), record_path="data.object"), T0, T0 + timedelta(seconds=1))


def test_a_full_compare_reads_the_records_listing_of_an_endpoint_of_envelopes(server: dict) -> None:
    system = connector(server, Listing(_things()), record_path="data.object")
    with pytest.raises(ConfigurationProblem, match="lists envelopes .* not records: name the endpoint"):
        list(system.scan(MAPPING, 100))
    plain = system.api.config.endpoints["things"].model_copy(update={"record_path": None})
    system.api.config.endpoints.update(records=plain)
    system.api.config.endpoints["things"].records_endpoint = "records"
    frame = pd.concat(system.scan(MAPPING, 4), ignore_index=True)
    assert sorted(frame["id"]) == sorted(i["id"] for i in _things())
    assert frame["metadata.invoice_id"].notna().all()


def test_an_endpoint_of_envelopes_finds_records_by_a_retrieve_path_only() -> None:
    with pytest.raises(ValueError, match="finds records by key with lookup.path only"):
        EndpointConfig(path="/v1/events", record_path="data.object", lookup={"param": "id"})
    EndpointConfig(path="/v1/events", record_path="data.object", lookup={"path": "/v1/charges/{key}"})


def test_records_endpoint_must_list_records() -> None:
    envelope = {"path": "/v1/events", "record_path": "data.object", "records_endpoint": "events"}
    with pytest.raises(ValueError, match="'events' is not an endpoint listing records"):
        RestConfig(endpoints={"events": envelope})


def test_a_full_load_sends_no_start_and_reads_the_listing_from_its_beginning(server: dict) -> None:
    listing = Listing(_things())
    frame = extract(connector(server, listing), EPOCH, T0 + timedelta(seconds=3))
    assert len(frame) == 9
    assert "created[gte]" not in listing.requests[0] and listing.requests[0]["created[lt]"] == str(epoch(T0) + 3)


def test_an_event_of_an_unexpected_object_is_quarantined_by_the_stripe_examples_codes(server: dict) -> None:
    """The example maps ``kind`` from ``object`` with codes for ``charge`` only: a customer in the feed is held."""
    config = yaml.safe_load((EXAMPLE / "mappings.yaml").read_text())["mappings"]["payments_stripe"]
    mapping = EntityMapping(**{**config["entities"]["charge"], "table": "things"})
    entity = EntityConfig(**yaml.safe_load((EXAMPLE / "entities.yaml").read_text())["entities"]["charge"])
    charge = {"id": "ch_1", "object": "charge", "amount": 1200, "currency": "usd", "captured": True,
              "metadata": {"order_id": "O1", "invoice_id": "INV-1"}}  # fmt: skip
    customer = {"id": "cus_1", "object": "customer", "email": "x@example.com"}
    events = [_event(1, epoch(T0), charge, "charge.succeeded"), _event(2, epoch(T0), customer, "customer.created")]
    frame = extract(
        connector(server, Listing(events), record_path="data.object"), T0, T0 + timedelta(seconds=1), mapping
    )
    canon = to_canonical(frame, mapping, entity, ["charge_id", "kind", "state", "amount", "currency"])
    held = canon.errors.loc[frame.index[frame["id"] == "cus_1"]].iloc[0]
    assert (held["check_name"], held["field"], held["value"]) == ("known_code", "kind", "customer")
    good = canon.records.loc[frame.index[frame["id"] == "ch_1"]].iloc[0]
    assert (good["kind"], good["state"], good["amount"], good["currency"]) == ("payment", "captured", "12.00", "USD")
    assert len(canon.errors) == 1
