"""Data quality with Great Expectations: generated and user checks, severities, thresholds, alerts, Data Docs."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import pandas as pd
import pytest
from report_runs import Element, Page
from sandbox_demo import ERP_FLOW, SHOP_FLOW, Demo, DemoDays, assert_conserved
from sqlalchemy import delete

from truesync import cli
from truesync.config import ConfigError, ExpectationSpec, QualityConfig, load_config
from truesync.pipeline.extract import batch_rows
from truesync.pipeline.finalize import QualityThresholdError, post_load_checks
from truesync.pipeline.job import EntityJob
from truesync.quality import checks as quality
from truesync.quality import generated, health
from truesync.reporting import html as report_html
from truesync.sandbox import systems as sandbox
from truesync.store import checks, runs, staging

CONFIG = Path(__file__).resolve().parents[2] / "include" / "config"


def _labelled(demo: Demo, flow: str, entity: str, check: str) -> list[str]:
    labels = demo.labels()
    mine = labels[(labels["flow"] == flow) & (labels["entity"] == entity) & (labels["check"] == check)]
    return [k for k in mine["key"] if k]


def _results(demo: Demo, reports: list[dict]) -> pd.DataFrame:
    frames = [staging.run_results(demo.store, r["run_id"]) for r in reports]
    return pd.concat(frames).drop_duplicates(["entity", "key"]).set_index(["entity", "key"])


# --- blocking checks: the right rows, the right expectation, the right reason -------------------


@pytest.mark.parametrize(
    ("flow", "entity", "check", "field", "reason"),
    [
        (SHOP_FLOW, "customer", sandbox.REGEX, "email", "field 'email' must be an email address; found '{v}'"),
        (SHOP_FLOW, "customer", sandbox.IN_SET, "tier", "field 'tier' must be one of the codes B, G, S; found 'X'"),
        (SHOP_FLOW, "customer", sandbox.REGEX, "birth_date", "must be an ISO date (YYYY-MM-DD); found '31/02/1990'"),
        (
            SHOP_FLOW,
            "order",
            sandbox.REGEX,
            "ordered_at",
            "must be an ISO date-time (YYYY-MM-DD HH:MM:SS); found 'yesterday'",
        ),
        (ERP_FLOW, "stock_item", sandbox.REGEX, "price", "field 'price' must be a decimal number; found '"),
        (ERP_FLOW, "stock_item", sandbox.BETWEEN, "price", "field 'price' must be at least 0; found '-5.00'"),
        (SHOP_FLOW, "customer", sandbox.UNIQUE, "customer_id", "must not appear twice with the same change time"),
    ],
)
def test_each_bad_record_is_held_by_the_right_expectation_with_its_value(
    demo_days: DemoDays, flow: str, entity: str, check: str, field: str, reason: str
) -> None:
    demo = demo_days.demo
    reports = [r for r in demo_days.reports if r["flow"] == flow]
    results = _results(demo, reports)
    keys = [k for k in _labelled(demo, flow, entity, check) if results.loc[(entity, k), "field"] == field]
    assert keys
    for key in keys:
        row = results.loc[(entity, key)]
        assert (row["class"], row["outcome"], row["check_name"], row["field"]) == (
            "invalid",
            "quarantined",
            check,
            field,
        )
        email = demo.by_key("webshop", "customers", "ext_id").get(key, {}).get("email_address")
        assert reason.format(v=email) in row["reason"] and row["reason"].startswith(check)
        exception = demo.exception(flow, entity, key)
        assert (exception["check_name"], exception["reason"]) == (check, row["reason"])


def test_good_rows_of_a_chunk_with_bad_ones_still_load(demo_days: DemoDays) -> None:
    demo = demo_days.demo
    reports = [r for r in demo_days.reports if r["flow"] == SHOP_FLOW]
    for report in reports:
        assert_conserved(demo, report)
    created = set(_results(demo, reports).query("outcome == 'created'").index.get_level_values("key"))
    missing = set(demo.labels().query("flow == @SHOP_FLOW and outcome == 'created'")["key"])
    assert missing <= created | set(demo.active_keys(SHOP_FLOW, "order"))
    assert missing & created


def test_warn_checks_are_reported_and_do_not_block(demo_days: DemoDays) -> None:
    demo = demo_days.demo
    reports = [r for r in demo_days.reports if r["flow"] == SHOP_FLOW]
    contacts = demo.by_key("crm", "contacts", "external_id")
    bad_phones = [k for k, r in demo.by_key("webshop", "customers", "ext_id").items() if r["phone"] == "call after 6pm"]
    assert bad_phones and all(contacts[k]["phone"] == "call after 6pm" for k in bad_phones), "warned, then loaded"
    phone_checks = [
        c
        for r in reports
        for c in r["quality"]["entities"]["customer"]["checks"]
        if c["column"] == "phone" and c["expectation"] == sandbox.REGEX
    ]
    assert {c["severity"] for c in phone_checks} == {"warn"}
    assert sum(c["unexpected"] for c in phone_checks) == len(bad_phones)
    assert all(not c["success"] for c in phone_checks if c["unexpected"])
    user = [c for c in reports[0]["quality"]["entities"]["customer"]["checks"]
            if c["expectation"] == "expect_column_value_lengths_to_be_between"]  # fmt: skip
    assert user and user[0]["severity"] == "warn" and user[0]["rule"] == "a name of 2 to 120 characters"


def test_personal_data_is_masked_in_reports_unless_switched_off(demo: Demo) -> None:
    report = demo.run(SHOP_FLOW, 0)
    email = next(
        c for c in report["quality"]["entities"]["customer"]["checks"] if c["column"] == "email" and c["unexpected"]
    )
    assert email["examples"] and all("***" in e["value"] and "example.com" not in e["value"] for e in email["examples"])
    assert "example.com" not in Path(report["path"]).read_text()

    demo.config.flows[SHOP_FLOW].quality.mask_pii = False
    again = demo.run(SHOP_FLOW, 0, tag="plain-")
    plain = next(
        c for c in again["quality"]["entities"]["customer"]["checks"] if c["column"] == "email" and c["unexpected"]
    )
    assert any(e["value"].endswith(".example.com") for e in plain["examples"])


# --- thresholds and alerts ---------------------------------------------------------------------


def test_a_run_over_the_blocked_share_fails_with_the_threshold_in_the_message(demo: Demo) -> None:
    demo.config.flows[ERP_FLOW].quality.max_blocked_share = 0.01
    demo.config.flows[ERP_FLOW].quality.min_records = 0  # the sandbox's days are small
    before = runs.watermark(demo.store, ERP_FLOW)
    with pytest.raises(QualityThresholdError) as failure:
        demo.run(ERP_FLOW, 0)
    message = str(failure.value)
    assert "erp_to_stockctl.stock_item:" in message and "were blocked by data-quality checks" in message
    assert "above quality.max_blocked_share = 1.0%" in message
    stored = json.loads(runs.get(demo.store, f"{ERP_FLOW}:day0")["report"])
    assert stored["status"] == "failed" and stored["quality"]["failed_thresholds"]
    assert runs.watermark(demo.store, ERP_FLOW) != before, "held records wait in the queue: the window is done"
    assert "above the limit of" not in message, "alerts do not fail the run, so they are not named"
    good = staging.run_results(demo.store, f"{ERP_FLOW}:day0").query("outcome == 'created'")
    assert not good.empty, "the good records of the batch were loaded all the same"


def test_records_still_held_from_earlier_runs_do_not_count_against_the_threshold(demo: Demo) -> None:
    demo.config.flows[ERP_FLOW].quality.max_blocked_share = 0.99
    demo.run(ERP_FLOW, 0)
    demo.config.flows[ERP_FLOW].quality.max_blocked_share = 0.01
    demo.config.flows[ERP_FLOW].quality.min_records = 0
    quiet = demo.run(ERP_FLOW, 10)  # a day without changes: only retries of the queue
    body = quiet["entities"]["stock_item"]
    assert body["classes"]["invalid"] == body["blocked_again"] > 0
    assert quiet["status"] == "success" and not quiet["quality"]["failed_thresholds"]


def _body(extracted: int, **classes: int) -> dict:
    overdue = classes.pop("overdue", 0)
    return {"extracted": extracted, "classes": classes, "overdue": overdue, "blocked_again": 0}


def test_class_shares_over_their_limit_raise_alerts() -> None:
    limits = QualityConfig(max_class_share={"mismatched": 0.02, "overdue": 0.1})
    failed, alerts = health.assess(limits, "f", {"order": _body(100, mismatched=3, overdue=5)}, [])
    assert failed == []
    assert [(a["metric"], a["kind"]) for a in alerts] == [("mismatched", "threshold")]
    assert alerts[0]["message"] == "f.order: mismatched is 3.0% (3 records), above the limit of 2.0%"


def test_a_jump_against_recent_runs_is_flagged_even_when_small() -> None:
    limits = QualityConfig(max_class_share={"mismatched": 0.5}, jump_factor=3, jump_min_records=3)
    history = [{"entities": {"order": _body(1000, mismatched=1)}} for _ in range(5)]
    _, alerts = health.assess(limits, "f", {"order": _body(1000, mismatched=4)}, history)
    assert [(a["metric"], a["kind"]) for a in alerts] == [("mismatched", "jump")]
    assert "jumped to 0.4% (4 records) from an average of 0.1% over the previous 5 runs" in alerts[0]["message"]
    _, steady = health.assess(limits, "f", {"order": _body(1000, mismatched=2)}, history)
    assert steady == [], "below jump_min_records"


def test_fail_on_alert_fails_the_run(demo: Demo) -> None:
    demo.config.flows[SHOP_FLOW].quality.fail_on_alert = True
    demo.config.flows[SHOP_FLOW].quality.min_records = 0
    with pytest.raises(QualityThresholdError, match="above the limit of"):
        demo.run(SHOP_FLOW, 0)


def _badge(html: str, run_id: str | None = None) -> Element:
    """The status badge of a run page, or of one run's row in the index."""
    elements = Page(html).elements
    if run_id is not None:
        elements = elements[next(i for i, e in enumerate(elements) if e.attrs.get("data-run") == run_id) :]
    return next(e for e in elements if "data-status-label" in e.attrs)


def test_a_successful_run_with_alerts_reads_success_with_alerts(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    """Everywhere a person reads a run's status; ``status`` stays ``success`` for programs."""
    limits = demo.config.flows[SHOP_FLOW].quality
    limits.max_class_share = {}
    quiet = demo.run(SHOP_FLOW, 0)
    limits.max_class_share, limits.min_records = {"mismatched": 0.0, "overwritten": 0.0, "overdue": 0.0}, 0
    loud = demo.run(SHOP_FLOW, 1)
    assert not quiet["quality"]["alerts"] and loud["quality"]["alerts"] and not loud["quality"]["failed_thresholds"]
    expected = {quiet["run_id"]: ("success", "ok"), loud["run_id"]: ("success with alerts", "warn")}

    assert (quiet["status"], quiet["status_label"]) == ("success", "success"), "finish_run's return value"
    assert (loud["status"], loud["status_label"]) == ("success", "success with alerts")
    assert runs.get(demo.store, loud["run_id"])["status"] == "success"
    index = report_html.index_path().read_text()
    for report in (quiet, loud):
        label, colour = expected[report["run_id"]]
        assert json.loads(Path(report["path"]).read_text())["status_label"] == label
        for badge in (_badge(Path(report["html"]).read_text()), _badge(index, report["run_id"])):
            assert (badge.attrs["data-status"], badge.attrs["data-status-label"]) == ("success", label)
            assert badge.text.strip() == label and badge.attrs["class"] == f"badge {colour}", "words, not colour alone"
    assert ".warn { background: #fff1d6; color: #7a5200; }" in index, "amber"

    capsys.readouterr()
    assert cli.main(["runs", "--flow", SHOP_FLOW, "--json"]) == 0
    listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert {run_id: (r["status"], r["status_label"]) for run_id, r in listed.items()} == {
        run_id: ("success", label) for run_id, (label, _) in expected.items()
    }
    assert listed[loud["run_id"]]["alerts"] == len(loud["quality"]["alerts"])
    assert cli.main(["runs", "--flow", SHOP_FLOW]) == 0
    table = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:3]}
    assert "success with alerts" in table[loud["run_id"]] and "with alerts" not in table[quiet["run_id"]]


# --- after loading ------------------------------------------------------------------------------


def test_post_load_checks_pass_on_a_clean_load_and_catch_a_broken_target(demo: Demo) -> None:
    report = demo.run(SHOP_FLOW, 0)
    post = [c for c in report["quality"]["entities"]["order"]["checks"] if c["phase"] == "post_load"]
    assert [(c["expectation"], c["column"]) for c in post] == [
        ("expect_column_pair_values_to_be_equal", "key"),
        ("expect_column_values_to_be_unique", "key"),
        ("expect_column_pair_values_to_be_equal", "customer_id"),
    ]
    assert all(c["success"] and c["evaluated"] for c in post)
    assert not [a for a in report["quality"]["alerts"] if a["kind"] == "post_load"]

    created = staging.run_results(demo.store, report["run_id"], "order").query("outcome == 'created'")["key"]
    deals = demo.by_key("crm", "deals", "order_ref")
    orphaned, vanished = deals[created.iloc[0]], created.iloc[1]
    contacts, deal_table = demo.table("crm", "contacts"), demo.table("crm", "deals")
    with demo.engine("crm").begin() as conn:  # someone else edits the target after the run
        conn.execute(delete(contacts).where(contacts.c.external_id == orphaned["contact_ref"]))
        conn.execute(delete(deal_table).where(deal_table.c.order_ref == vanished))
    post_load_checks(EntityJob(demo.config, demo.store, SHOP_FLOW, "order", report["run_id"]))
    summary = {(c["expectation"], c["column"]): c for c in checks.summary(demo.store, report["run_id"])["order"]
               if c["phase"] == "post_load"}  # fmt: skip
    parents = summary[("expect_column_pair_values_to_be_equal", "customer_id")]
    assert parents["unexpected"] >= 1 and parents["examples"][0]["value"] == orphaned["contact_ref"]
    there = summary[("expect_column_pair_values_to_be_equal", "key")]
    assert there["unexpected"] == 1 and there["examples"] == [{"key": vanished, "value": vanished}]


# --- Data Docs ----------------------------------------------------------------------------------


def test_each_run_gets_a_data_docs_site_with_its_checks_masked(demo_days: DemoDays) -> None:
    report = next(r for r in demo_days.reports if r["run_id"] == f"{SHOP_FLOW}:day0")  # the first run
    index = Path(report["path"]).parent / report["quality"]["data_docs"]
    assert index.is_file()
    pages = list(index.parent.glob("validations/**/*.html"))
    assert len(pages) == 2, "one validation page per entity"
    text = "\n".join(p.read_text() for p in pages)
    assert "email" in text and "birth_date" in text and "customer_id" in text
    assert "@example.com" not in text, "masked"


# --- configuration and odd data -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expectation", "problem"),
    [
        ({"expectation": "expect_column_to_be_nice", "kwargs": {"column": "name"}}, "unknown Great Expectations"),
        ({"expectation": "expect_column_values_to_be_between", "kwargs": {"column": "name"}}, "rejects its arguments"),
        (
            {"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "nickname"}},
            "no field 'nickname'",
        ),
    ],
)
def test_bad_user_expectations_are_configuration_errors(tmp_path: Path, expectation: dict, problem: str) -> None:
    directory = tmp_path / "config"
    shutil.copytree(CONFIG, directory)
    path = directory / "entities.yaml"
    first = "    expectations:\n"
    text = path.read_text().replace(first, f"{first}      - {json.dumps(expectation)}\n")
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        quality.check_expectations(load_config(directory))
    assert error.value.file == str(path) and error.value.path.startswith("entities.customer.expectations[0]")
    assert problem in str(error.value) and "customer" in str(error.value)


def _suite(*expectations: ExpectationSpec) -> quality.Suite:
    config = load_config(CONFIG)
    spec = config.entities["stock_item"].model_copy(update={"expectations": list(expectations)})
    mapping = config.entity_mapping("erp", "stock_item")
    checks = quality.build_checks(spec, mapping, ["sku", "name", "price"])
    return quality.Suite("test.stock_item", checks, "sku", {n: f.type for n, f in spec.fields.items()})


def test_a_check_that_crashes_on_odd_data_is_reported_and_blocks_nothing() -> None:
    odd = ExpectationSpec(expectation="expect_column_values_to_be_between", kwargs={"column": "name", "min_value": 1})
    verdict = _suite(odd).validate(_items(["1.00", "2.00"], ["thing", None]))
    crashed = verdict.stats[-1]
    assert crashed["expectation"] == "expect_column_values_to_be_between"
    assert crashed["error"].startswith("the check itself failed") and crashed["unexpected"] == 0
    assert verdict.failures["check_name"].to_dict() == {1: "expect_column_values_to_not_be_null"}, (
        "the null name is held by its own check; the crashed check holds nothing"
    )


def _items(prices: list[str | None], names: list[str | None] | None = None) -> pd.DataFrame:
    n = len(prices)
    return pd.DataFrame({"sku": [f"S{i}" for i in range(n)], "name": names or ["thing"] * n, "price": prices,
                         "change_time": ["2026-11-01 10:00:00"] * n,
                         quality.CHANGE_INSTANT: ["2026-11-01T10:00:00"] * n})  # fmt: skip


def test_user_checks_see_numbers_so_ranges_and_means_work() -> None:
    cap = ExpectationSpec(
        expectation="expect_column_values_to_be_between", kwargs={"column": "price", "max_value": 100}
    )
    mean = ExpectationSpec(
        expectation="expect_column_mean_to_be_between", kwargs={"column": "price", "max_value": 10}, severity="warn"
    )
    verdict = _suite(cap, mean).validate(_items(["5.00", "250.00", "12.50"]))
    assert verdict.failures["check_name"].to_dict() == {1: "expect_column_values_to_be_between"}
    assert verdict.failures.at[1, "value"] == "250.00", "the value as the source holds it"
    by_name = {s["expectation"]: s for s in verdict.stats}
    assert (
        by_name["expect_column_mean_to_be_between"]["observed"]
        and by_name["expect_column_mean_to_be_between"]["error"] is None
    )


def test_a_check_passing_within_mostly_reports_rows_but_holds_none() -> None:
    loose = ExpectationSpec(
        expectation="expect_column_values_to_match_regex", kwargs={"column": "name", "regex": "^t", "mostly": 0.5}
    )
    verdict = _suite(loose).validate(_items(["1.00", "2.00", "3.00"], ["thing", "other", "thing"]))
    assert verdict.failures.empty
    assert verdict.stats[-1]["unexpected"] == 1


def test_no_checked_chunk_outlives_its_validation() -> None:
    """GX caches the last batch's data and the metrics computed from it in its execution engine;
    a suite lives as long as the process, so what it kept would stay in memory through the sync
    that follows. After validating, no frame, column or list of the chunk's length is left."""
    n = 4_321

    def left() -> list[str]:
        gc.collect()
        kinds = (pd.DataFrame, pd.Series, list)
        return [type(o).__name__ for o in gc.get_objects() if isinstance(o, kinds) and len(o) == n]

    assert left() == []
    cap = ExpectationSpec(expectation="expect_column_values_to_be_between", kwargs={"column": "price", "max_value": 9})
    suite = _suite(cap)
    assert suite.generated and suite.user, "generated checks, and user checks in a GX suite"
    items = _items(["5.00"] * (n - 1) + ["25.00"])
    checked = weakref.ref(items)
    assert suite.validate(items).failures["check_name"].to_dict() == {n - 1: "expect_column_values_to_be_between"}
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(n)]})
    adhoc = weakref.ref(frame)
    check = quality.unique("key", quality.WARN, "must be unique")
    assert quality.run_checks([check], frame, "key").stats[0]["unexpected"] == 0
    del items, frame
    assert checked() is None and adhoc() is None
    assert left() == []


# --- generated checks: truesync's evaluation finds what GX's pandas engine finds -----------------

_ODD_TEXT = ["a", "", None, float("nan"), "ü-Straße", "12,5O", " 42 ", "42", "a", "x@y.io", "\u00a0", "4.0\n", "A"]
_ODD_OTHER = ["a", "", None, "n", "ü-Straße", None, " 42 ", "42", "b", "x@y.io", float("nan"), "4.0\n", "a"]
_ODD_NUMBERS = [0.0, -1.0, None, float("nan"), 100.0, 100.5, 1e12, -0.0, 5.5, 99.99, float("inf"), 7.0, 0.0]


def _odd_batch(text_dtype: str) -> pd.DataFrame:
    """Nulls of every spelling, blanks, unicode, numbers as text, repeats, on an index with gaps."""
    index = pd.Index([3 * i + 10 for i in range(len(_ODD_TEXT))])
    return pd.DataFrame(
        {
            "text": pd.Series(_ODD_TEXT, index=index, dtype=text_dtype),
            "other": pd.Series(_ODD_OTHER, index=index, dtype=text_dtype),
            "number": pd.Series(_ODD_NUMBERS, index=index, dtype=float),
            "whole": pd.Series([2**53 + i for i in range(len(_ODD_TEXT))], index=index, dtype="int64"),
        }
    )


_expect = generated.expectation
_GENERATED = [
    _expect(generated.NOT_NULL, column="text"),
    _expect(generated.IN_SET, column="text", value_set=["a", "", "42"]),
    *(
        _expect(generated.MATCHES, column="text", regex=pattern)
        for pattern, _ in [*quality._TYPE_PATTERNS.values(), *quality._FORMAT_PATTERNS.values(), ("ß", "")]
    ),
    _expect(generated.BETWEEN, column="number", min_value=0, max_value=100),
    _expect(generated.BETWEEN, column="number", min_value=0),
    _expect(generated.BETWEEN, column="number", max_value=99.99),
    _expect(generated.BETWEEN, column="number", min_value=0, max_value=100, strict_min=True),
    _expect(generated.BETWEEN, column="whole", max_value=2**53),  # past a float's whole numbers
    _expect(generated.COMPOUND_UNIQUE, column_list=["text", "other"]),
    _expect(generated.COMPOUND_UNIQUE, column_list=["other", "number"]),
    _expect(generated.PAIR_EQUAL, column_A="text", column_B="other"),
    _expect(generated.UNIQUE, column="text"),
    _expect(generated.UNIQUE, column="other"),
]


def _by_gx(expectation: generated.Expectation, frame: pd.DataFrame) -> tuple[bool, list[object], dict]:
    """GX's own validation of the expectation of that name and arguments: verdict, rows, arguments as GX holds them."""
    spec = ExpectationSpec(expectation=expectation.expectation_type, kwargs=expectation.kwargs)
    as_gx = quality.user_expectation(spec)
    source = quality.fresh_context().data_sources.add_pandas("differential")
    definition = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
    outcome = definition.get_batch(batch_parameters={"dataframe": frame}).validate(
        as_gx, result_format={"result_format": "COMPLETE"}
    )
    assert not outcome.exception_info.get("raised_exception"), outcome.exception_info
    return outcome.success, list(outcome.result["unexpected_index_list"]), as_gx.configuration.kwargs


@pytest.mark.parametrize("text_dtype", ["object", "str"])
@pytest.mark.parametrize("expectation", _GENERATED, ids=lambda e: f"{e.expectation_type}:{e.kwargs}")
def test_a_generated_check_finds_the_rows_gx_finds(expectation: generated.Expectation, text_dtype: str) -> None:
    """Every expectation type truesync generates, evaluated by ``quality.generated``, against GX's own
    validation of the same batch: the same unexpected rows in the same order, the same verdict, and
    the arguments reported as GX holds them."""
    frame = _odd_batch(text_dtype)
    check = quality.Check(expectation, None, quality.BLOCK, "rule")
    ours = quality.run_checks([check], frame, "text").stats[0]
    success, rows, kwargs = _by_gx(expectation, frame)
    assert quality._evaluated(check, frame) == quality.Outcome(success, rows)
    assert ours["unexpected"] == len(rows) and ours["error"] is None
    assert ours["kwargs"] == kwargs


def test_every_check_truesync_generates_is_one_it_evaluates() -> None:
    config = load_config(CONFIG)
    for flow in config.flows:
        for name in config.flows[flow].entities:
            spec, mapping = config.entities[name], config.entity_mapping(config.flows[flow].source, name)
            built = quality.build_checks(spec, mapping, list(mapping.fields))
            generated_checks = [c for c in built if not c.typed]
            assert generated_checks, (flow, name)
            assert all(isinstance(c.expectation, generated.Expectation) for c in generated_checks), (flow, name)


def test_a_process_that_runs_only_generated_checks_never_imports_great_expectations() -> None:
    """Importing GX costs 1.7 s and 128 MiB a process; only user expectations and Data Docs need it."""
    script = """
import sys
import pandas as pd
from truesync.pipeline import compare, extract, finalize, load, runner  # every task's engine code
from truesync.quality import checks, generated
check = checks.Check(generated.expectation(generated.NOT_NULL, column="k"), "k", checks.BLOCK, "must not be null")
assert checks.run_checks([check], pd.DataFrame({"k": ["a", None]}), "k").failures.index.tolist() == [1]
print(sorted(m for m in sys.modules if m.split(".")[0] in ("great_expectations", "scipy", "altair")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_generated_check_that_cannot_run_is_reported_and_holds_nothing() -> None:
    frame = pd.DataFrame({"key": ["k1", "k2"]})
    missing = quality.Check(_expect(generated.NOT_NULL, column="gone"), "gone", quality.BLOCK, "x")
    verdict = quality.run_checks([missing], frame, "key")
    assert verdict.failures.empty
    assert verdict.stats[0]["error"] == "the check itself failed: KeyError: 'gone'"


def test_chunks_are_joined_into_check_batches_only_for_gx_validating_user_expectations(demo: Demo) -> None:
    flow = demo.config.flows[SHOP_FLOW]
    assert flow.chunk_size < flow.quality.batch_rows, "the premise: a batch holds several chunks"
    customer, order = (EntityJob(demo.config, demo.store, SHOP_FLOW, e, "r") for e in ("customer", "order"))
    assert demo.config.entities["customer"].expectations and not demo.config.entities["order"].expectations
    assert batch_rows(customer) == flow.quality.batch_rows
    assert batch_rows(order) == flow.chunk_size, "generated checks have no fixed cost to spread"


def test_an_empty_batch_is_no_error() -> None:
    verdict = _suite().validate(pd.DataFrame(columns=["sku", "name", "price", "change_time"]))
    assert verdict.failures.empty and verdict.stats == []


def test_a_crash_building_data_docs_is_reported_and_the_run_still_finishes(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise ValueError("renderer fell over")

    monkeypatch.setattr("truesync.pipeline.finalize.build_site", broken)  # a GX renderer bug cannot be provoked
    report = demo.run(ERP_FLOW, 0)
    assert report["status"] == "success" and report["quality"]["data_docs"] is None
    crash = [a for a in report["quality"]["alerts"] if a["kind"] == "check_error"]
    assert crash and "Data Docs could not run: ValueError: renderer fell over" in crash[0]["message"]
    assert Path(report["html"]).is_file()


def test_tiny_batches_are_not_judged_on_shares() -> None:
    limits = QualityConfig(max_blocked_share=0.05, max_class_share={"mismatched": 0.02}, min_records=20)
    keyless_only = _body(1, invalid=1)
    few = _body(10, mismatched=5)
    failed, alerts = health.assess(limits, "f", {"customer": keyless_only, "order": few}, [])
    assert failed == [] and alerts == []
    failed, _ = health.assess(limits, "f", {"customer": _body(40, invalid=3)}, [])
    assert failed and "3 of 40 new records (7.5%)" in failed[0]
