"""Masking of a queued record (``reporting.masking``) with the sandbox configuration."""

from __future__ import annotations

import json

from truesync.config import load_config
from truesync.reporting.masking import mask_exception, personal_names, record_names

FLOW = "webshop_to_crm"


def test_a_reason_about_a_personal_field_hides_every_quoted_value_but_keeps_names() -> None:
    config = load_config()
    personal, names = personal_names(config, FLOW, "customer"), record_names(config, FLOW, "customer")
    payload = json.dumps({"email_address": "john.doe@example.com", "full_name": "John Doe", "tier": "G"})
    reason = "cannot read column 'email_address' as email: 'john.doe@example.com'"
    row = {"flow": FLOW, "entity": "customer", "field": "email", "reason": reason, "payload": payload}
    shown = mask_exception(dict(row), personal, names)
    assert "john.doe@example.com" not in shown["reason"] and "'email_address'" in shown["reason"]
    assert "John Doe" not in shown["payload"] and json.loads(shown["payload"])["tier"] == "G"
    other = {**row, "field": "tier", "reason": "unknown code 'X' in column 'tier_code'"}
    assert mask_exception(dict(other), personal, names)["reason"] == other["reason"], "not a personal field"


def test_nothing_is_masked_when_the_flow_turns_masking_off() -> None:
    config = load_config()
    config.flows[FLOW].quality.mask_pii = False
    assert personal_names(config, FLOW, "customer") == {}
