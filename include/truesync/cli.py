"""The ``truesync`` command: check configuration, seed the sandbox, run, report, triage.

Every sub-command works on the same store and configuration the DAGs use, located by
``TRUESYNC_STATE_DIR`` / ``TRUESYNC_CONFIG_DIR`` and the ``truesync_store`` connection.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from truesync import sandbox
from truesync.config import ConfigError, load_config
from truesync.connectors.errors import ConfigurationProblem, SystemUnavailable
from truesync.core.classify import REPORTED_CLASSES
from truesync.pipeline import progress
from truesync.pipeline.compare import DeleteGuardError, run_compare
from truesync.pipeline.dags import target_pools, translated_entities
from truesync.pipeline.finalize import ConservationError, QualityThresholdError
from truesync.pipeline.reprocess import run_reprocess
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window, naive_utc
from truesync.preflight import preflight
from truesync.quality.checks import check_expectations
from truesync.reporting.html import html_path, render_index, render_run
from truesync.reporting.report import OUTCOMES, outcomes_of, status_label
from truesync.reporting.trace import render_text as render_trace
from truesync.reporting.trace import trace as trace_record
from truesync.store import Store, queue, runs, triage
from truesync.store.core import utcnow
from truesync.support.connections import ConnectionNotFound, env_var
from truesync.support.paths import state_dir

EXIT_USAGE, EXIT_FAILED = 2, 1


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ConnectionNotFound, ConfigurationProblem, SystemUnavailable, LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truesync",
        description="Check configuration, seed the sandbox, run flows, read reports and triage the exception queue. "
        "Works on the store and configuration the DAGs use (TRUESYNC_STATE_DIR, TRUESYNC_CONFIG_DIR).",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    config = sub.add_parser("config", help="configuration").add_subparsers(required=True, metavar="ACTION")
    check = config.add_parser("check", help="validate the YAML configuration")
    check.add_argument("--dir", help="configuration directory (default: TRUESYNC_CONFIG_DIR or include/config)")
    check.set_defaults(handler=_config_check)
    _sandbox_parser(sub)
    _deploy_parsers(sub)
    _run_parser(sub)
    _compare_parser(sub)
    _reprocess_parser(sub)
    _report_parsers(sub)
    _exceptions_parser(sub)
    _trace_parser(sub)
    return parser


def _sandbox_parser(sub: Any) -> None:
    box = sub.add_parser("sandbox", help="demo systems").add_subparsers(required=True, metavar="ACTION")
    init = box.add_parser("init", help="create the sandbox systems with drift and ground-truth labels")
    init.add_argument("--scale", type=int, default=1000, help="number of customers (100 to 1,000,000)")
    init.add_argument("--seed", type=int, default=7)
    init.add_argument("--start", type=date.fromisoformat, default=sandbox.DEMO_START, help="first demo day")
    init.add_argument("--days", type=int, default=sandbox.DEMO_DAYS)
    init.set_defaults(handler=_sandbox_init)
    box.add_parser(
        "drift", help="after the flows ran over the demo days: apply the quiet drift init planned, for a compare"
    ).set_defaults(handler=_sandbox_drift)
    box.add_parser(
        "deliver", help="after the demo days: a late terminal file and a rewritten one arrive in the POS drop"
    ).set_defaults(handler=_sandbox_deliver)
    serve = box.add_parser("serve", help="serve the sandbox REST APIs (CRM, payment gateway) until interrupted")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--crm-port", type=int, default=8701, help="0 picks a free port")
    serve.add_argument("--payments-port", type=int, default=8702, help="0 picks a free port")
    serve.add_argument("--token", default=sandbox.DEFAULT_TOKEN, help="bearer token the APIs require")
    serve.set_defaults(handler=_sandbox_serve)


def _deploy_parsers(sub: Any) -> None:
    store = sub.add_parser("store", help="the store database").add_subparsers(required=True, metavar="ACTION")
    store.add_parser("migrate", help="create or upgrade the store's tables").set_defaults(handler=_store_migrate)
    sub.add_parser(
        "preflight", help="check the metadata DB, store and broker settings; name the one that is wrong"
    ).set_defaults(handler=_preflight)
    sub.add_parser(
        "pools", help="the Airflow pool of each target system, as JSON for 'airflow pools import'"
    ).set_defaults(handler=_pools)


def _store_migrate(args: argparse.Namespace) -> int:
    store = Store()
    print(f"store at {store.url.render_as_string(hide_password=True)} is at the latest schema")
    return 0


def _preflight(args: argparse.Namespace) -> int:
    findings = preflight()
    if not findings:
        print("nothing to check: no metadata database, store or broker URL is set in the environment")
    for finding in findings:
        print(finding, file=sys.stdout if finding.ok else sys.stderr)
    return 0 if all(f.ok for f in findings) else EXIT_FAILED


def _pools(args: argparse.Namespace) -> int:
    print(json.dumps(target_pools(load_config()), indent=2))
    return 0


def _run_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="run one flow now for a window, outside Airflow")
    run.add_argument("flow")
    run.add_argument("--start", type=datetime.fromisoformat, required=True, help="window start (UTC)")
    run.add_argument("--end", type=datetime.fromisoformat, required=True, help="window end (UTC, exclusive)")
    run.add_argument("--dry-run", action="store_true", help="extract, classify and report; write nothing")
    run.add_argument("--run-id", help="the whole run id (default: <flow>:manual__<start>)")
    run.add_argument("-q", "--quiet", action="store_true", help="only warnings on stderr, not the progress log")
    run.set_defaults(handler=_run)


def _compare_parser(sub: Any) -> None:
    compare = sub.add_parser(
        "compare", help="compare every record of a flow's source, target and ledger; repair what the flow allows"
    )
    compare.add_argument("flow")
    compare.add_argument("--entity", action="append", help="only this entity (repeatable; default: all of the flow)")
    compare.add_argument("--dry-run", action="store_true", help="classify and list the planned changes; write nothing")
    compare.add_argument("--json", action="store_true", help="print the JSON report instead of a summary")
    compare.add_argument("--run-id", help="the whole run id (default: <flow>:compare__<now>)")
    compare.add_argument("-q", "--quiet", action="store_true", help="only warnings on stderr, not the progress log")
    compare.set_defaults(handler=_compare)


def _reprocess_parser(sub: Any) -> None:
    reprocess = sub.add_parser(
        "reprocess", help="translate again the records behind a code table's current version, and write what changed"
    )
    reprocess.add_argument("flow")
    reprocess.add_argument("--entity", action="append", help="only this entity (repeatable; default: all translated)")
    reprocess.add_argument("--code-table", help="only records behind this table (default: every table of the flow)")
    reprocess.add_argument(
        "--dry-run", action="store_true", help="classify and report what would change; write nothing"
    )
    reprocess.add_argument("--json", action="store_true", help="print the JSON report instead of a summary")
    reprocess.add_argument("--run-id", help="the whole run id (default: <flow>:reprocess__<now>)")
    reprocess.add_argument("-q", "--quiet", action="store_true", help="only warnings on stderr, not the progress log")
    reprocess.set_defaults(handler=_reprocess)


def _report_parsers(sub: Any) -> None:
    report = sub.add_parser("report", help="print a run report")
    report.add_argument("--flow")
    report.add_argument("--run", help="run id, '<flow>:<Airflow run id>' (default: the latest run)")
    report.add_argument("--json", action="store_true", help="the JSON document instead of a table")
    report.add_argument("--open", action="store_true", help="print the path and file:// URL of the HTML report page")
    report.set_defaults(handler=_report)
    listing = sub.add_parser("runs", help="list runs, newest first, with their ids for 'report --run'")
    listing.add_argument("--flow")
    listing.add_argument("--limit", type=int, default=50, help="how many of the newest runs (default 50)")
    listing.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    listing.set_defaults(handler=_runs)
    summary = sub.add_parser("summary", help="counts per flow x entity x class over recent runs (dry runs left out)")
    summary.add_argument("--runs", type=int, default=1000, help="how many recent runs per flow")
    summary.set_defaults(handler=_summary)


def _exceptions_parser(sub: Any) -> None:
    exc = sub.add_parser("exceptions", help="the exception queue").add_subparsers(required=True, metavar="ACTION")
    listing = exc.add_parser("list", help="list exceptions, newest first")
    for name in ("flow", "entity", "class", "status"):
        listing.add_argument(f"--{name}")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_exceptions_list)
    show = exc.add_parser("show", help="one exception in full")
    show.add_argument("id", type=int)
    show.set_defaults(handler=_exceptions_show)
    retry = exc.add_parser("retry", help="send exceptions back to be retried by the next run")
    retry.add_argument("ids", type=int, nargs="+")
    retry.set_defaults(handler=_decide("retry", default_reason="sent back for retry"))
    for action, status in (("resolve", "resolved"), ("ignore", "ignored")):
        cmd = exc.add_parser(action, help=f"mark exceptions {status}")
        cmd.add_argument("ids", type=int, nargs="+")
        cmd.add_argument("--reason", required=True)
        cmd.set_defaults(handler=_decide(action))


def _trace_parser(sub: Any) -> None:
    trace = sub.add_parser(
        "trace", help="one record's path: every run that saw it, ledger, overwrites, exceptions, live values"
    )
    trace.add_argument("flow")
    trace.add_argument("entity")
    trace.add_argument("key", help="the record's key as the flow's source holds it")
    trace.add_argument("--json", action="store_true", help="the JSON document instead of text")
    trace.set_defaults(handler=_trace)


def _trace(args: argparse.Namespace) -> int:
    found = trace_record(load_config(), Store(), args.flow, args.entity, args.key)
    print(json.dumps(found, indent=2, default=str) if args.json else render_trace(found))
    return 0


def _config_check(args: argparse.Namespace) -> int:
    config = load_config(args.dir)
    check_expectations(config)
    print(f"configuration OK: {config.directory}")
    print(f"  systems:  {', '.join(config.systems)}")
    print(f"  entities: {' -> '.join(config.load_order())}")
    for name, flow in config.flows.items():  # entities load parents first, whatever order the flow lists them in
        print(f"  flow {name}: {flow.source} -> {flow.target}")
        print(f"    load order: {' -> '.join(config.load_order(flow.entities))}")
        if flow.triggered_by:
            print(f"    also runs when another flow writes: {', '.join(flow.triggered_by)} (Airflow Assets)")
    for name, system in config.systems.items():
        if not os.environ.get(env_var(system.connection)):
            print(f"  note: system '{name}' needs Airflow connection '{system.connection}' "
                  f"(not in this environment as {env_var(system.connection)})")  # fmt: skip
    return 0


def _sandbox_init(args: argparse.Namespace) -> int:
    if not 1 <= args.scale <= 10_000_000:
        raise ValueError("--scale must be between 1 and 10,000,000")
    from truesync.sandbox import drift, pos, rest, systems  # the demo's code, loaded only by the sandbox commands

    config = load_config()
    rows = systems.build(args.scale, args.seed, args.start, args.days)
    exports = pos.build(rows, args.seed, args.start, args.days)
    rest.add_labels(rows)
    payments = rest.build_payments(rows, args.seed, args.start, args.days)
    quiet = drift.plan(config, rows, args.seed, args.start, args.days)
    labels = state_dir() / "sandbox" / "labels.csv"
    counts = systems.write(rows, systems.system_urls(config), labels)
    counts |= rest.write_seeds(rows, payments, labels.parent)
    counts["pos_events files"] = pos.write_exports(exports, pos.events_folder(config))
    later = systems.Rows()
    pos.write_exports(pos.plan_deliveries(exports, args.start, args.days, later), labels.parent / pos.LATER)
    deliveries = later.write_labels(labels.parent / "delivery_labels.csv")
    compare_labels, _ = drift.write(quiet, labels.parent)
    width = max(map(len, counts))
    for table, n in counts.items():
        print(f"  {table:<{width}} {n:>10,} rows")
    print(f"ground truth: {labels} ({len(rows.labels):,} labels)")
    print(f"quiet drift for a compare: {compare_labels} ({len(quiet.labels):,} labelled records; "
          "'truesync sandbox drift' applies it once the flows ran over the demo days)")  # fmt: skip
    print(f"files delivered after the demo days: {deliveries} ('truesync sandbox deliver' puts them in the drop)")
    return 0


def _sandbox_drift(args: argparse.Namespace) -> int:
    from truesync.sandbox import drift, systems  # the demo's code, loaded only by the sandbox commands

    config = load_config()
    directory = state_dir() / "sandbox"
    counts = drift.apply(config, Store(), systems.system_urls(config), directory)
    for (flow, entity, kind), n in sorted(counts.items()):
        print(f"  {flow:<18} {entity:<11} {kind:<12} {n:>6,}")
    print(f"ground truth of the next compare: {directory / 'compare_labels.csv'}")
    return 0


def _sandbox_deliver(args: argparse.Namespace) -> int:
    from truesync.sandbox import pos  # the demo's code, loaded only by the sandbox commands

    directory = state_dir() / "sandbox"
    for path in pos.deliver(directory, pos.events_folder(load_config())):
        print(f"  delivered {path}")
    print(f"ground truth of the next run of {pos.EVENTS_FLOW}: {directory / 'delivery_labels.csv'}")
    return 0


def _sandbox_serve(args: argparse.Namespace) -> int:
    from truesync.sandbox import rest  # the demo's code, loaded only by the sandbox commands

    servers = rest.serve(state_dir() / "sandbox", args.host, args.crm_port, args.payments_port, args.token)
    for system, server in servers.items():
        print(
            f"{system}: {server.url}  (AIRFLOW_CONN_TRUESYNC_{system.upper()}=http://:<token>@{server.host}:{server.port})"
        )
    print("serving until interrupted (Ctrl-C)", flush=True)
    try:
        while all(s.thread.is_alive() for s in servers.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers.values():
            server.stop()
    return 0


def _run(args: argparse.Namespace) -> int:
    config = load_config()
    if args.flow not in config.flows:
        raise LookupError(f"unknown flow '{args.flow}'")
    run_id = args.run_id or f"{args.flow}:manual__{args.start.isoformat()}"
    window = Window(naive_utc(args.start), naive_utc(args.end))
    store = Store()
    try:
        with progress.printed(sys.stderr, logging.WARNING if args.quiet else logging.INFO):
            report = run_flow(config, store, args.flow, run_id, window, args.dry_run)
    except (ConservationError, QualityThresholdError) as exc:  # the run's report is written: show it, then why
        _print_report(json.loads(runs.get(store, run_id)["report"]))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _print_report(report)
    return 0 if report["status"] == "success" else EXIT_FAILED


def _flow_and_entities(args: argparse.Namespace) -> Any:
    """The configuration, after checking the command's flow and ``--entity`` names against it."""
    config = load_config()
    if args.flow not in config.flows:
        raise LookupError(f"unknown flow '{args.flow}': the flows are {', '.join(config.flows)}")
    unknown = [e for e in args.entity or [] if e not in config.flows[args.flow].entities]
    if unknown:
        raise LookupError(f"flow '{args.flow}' has no entity {', '.join(unknown)}")
    return config


def _compare(args: argparse.Namespace) -> int:
    config = _flow_and_entities(args)
    return _whole_run(
        args,
        "compare",
        lambda store, run_id: run_compare(config, store, args.flow, run_id, args.dry_run, args.entity),
        (ConservationError, QualityThresholdError, DeleteGuardError),
    )


def _reprocess(args: argparse.Namespace) -> int:
    config = _flow_and_entities(args)
    translated = translated_entities(config, args.flow, args.code_table)
    untranslated = [e for e in args.entity or [] if e not in translated]
    if untranslated:
        through = f"code table '{args.code_table}'" if args.code_table else "a code table"
        raise LookupError(f"flow '{args.flow}' translates {', '.join(untranslated)} through no {through}")
    return _whole_run(
        args,
        "reprocess",
        lambda store, run_id: run_reprocess(
            config, store, args.flow, run_id, args.entity, args.code_table, args.dry_run
        ),
        (ConservationError, QualityThresholdError),
    )


def _whole_run(
    args: argparse.Namespace,
    kind: str,
    run: Callable[[Store, str], dict[str, Any]],
    failures: tuple[type[Exception], ...],
) -> int:
    """Run a compare or reprocess in this process with the progress log, then print its report.

    A failure the run reports (``failures``) prints the report it left, then why.
    """
    run_id = args.run_id or f"{args.flow}:{kind}__{utcnow().isoformat(timespec='seconds')}"
    store = Store()
    try:
        with progress.printed(sys.stderr, logging.WARNING if args.quiet else logging.INFO):
            report = run(store, run_id)
    except failures as exc:
        written = json.loads(runs.get(store, run_id)["report"] or "{}")
        if "entities" in written:  # a guard that tripped leaves only the reason, printed below
            _print_report(written)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0 if report["status"] == "success" else EXIT_FAILED


def _report(args: argparse.Namespace) -> int:
    store = Store()
    run = runs.get(store, args.run) if args.run else next(iter(runs.latest(store, args.flow, finished=True)), None)
    if run is None or not run["report"]:
        raise LookupError("no finished run found" + (f" for flow '{args.flow}'" if args.flow else ""))
    report = json.loads(run["report"])
    if args.open:
        page = html_path(run["flow"], run["run_id"])
        if not page.exists():  # a run from before HTML reports, or one that failed without counts
            page = render_run(load_config(), store, report) if "entities" in report else render_index(store)
        print(page)
        print(page.resolve().as_uri())
    elif args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0


RUN_COUNTS = ("extracted", *OUTCOMES)


def _runs(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ValueError("--limit must be at least 1")
    store = Store()
    listed = [_run_row(store, run) for run in runs.latest(store, args.flow, args.limit)]
    if args.flow and not listed and args.flow not in _known_flows(store):
        raise LookupError(f"unknown flow '{args.flow}' (known: {', '.join(_known_flows(store)) or 'none'})")
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    header = ("run id", "flow", "window start", "window end", "status", *RUN_COUNTS, "")
    rows = [
        (r["run_id"], r["flow"], r["window_start"], r["window_end"], r["status_label"],
         *(f"{r[c]:,}" if r[c] is not None else "–" for c in RUN_COUNTS), "dry run" if r["dry_run"] else "")
        for r in listed
    ]  # fmt: skip
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    numeric = range(5, 5 + len(RUN_COUNTS))
    for row in (header, *rows):
        cells = [str(c).rjust(widths[i]) if i in numeric else str(c).ljust(widths[i]) for i, c in enumerate(row)]
        print("  ".join(cells).rstrip())
    more = f" (the newest {args.limit}; --limit for more)" if len(listed) == args.limit else ""
    print(f"{len(listed)} run(s){more}; details: truesync report --run <run id>")
    return 0


def _run_row(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """One run as ``truesync runs`` lists it: the report's totals, or the counts so far of a run without them."""
    report = json.loads(run["report"]) if run["report"] else None
    totals = (report or {}).get("totals")
    if totals is None:
        counts = runs.entity_counts(store, run["run_id"]).values()
        totals = {c: sum(int(e[c] or 0) for e in counts) if counts else None for c in RUN_COUNTS}
    return {
        "run_id": run["run_id"],
        "flow": run["flow"],
        "window_start": run["window_start"].isoformat(),
        "window_end": run["window_end"].isoformat(),
        "status": run["status"],
        "status_label": status_label(report, run["status"]),
        "dry_run": bool(run["dry_run"]),
        "started_at": run["started_at"].isoformat(),
        "finished_at": run["finished_at"].isoformat() if run["finished_at"] else None,
        **{c: totals.get(c) for c in RUN_COUNTS},
        "alerts": len(((report or {}).get("quality") or {}).get("alerts") or []),
    }


def _known_flows(store: Store) -> list[str]:
    """The configured flows and those with runs in the store (a flow renamed since keeps its runs)."""
    try:
        configured = list(load_config().flows)
    except ConfigError:
        configured = []
    return sorted({*configured, *runs.flows(store)})


def _print_report(report: dict[str, Any]) -> None:
    window = report.get("window", {})
    dry = " (dry run: nothing written)" if report.get("dry_run") else ""
    print(f"run {report['run_id']}  flow {report.get('flow')}  {status_label(report)}{dry}")
    print(f"window [{window.get('start')}, {window.get('end')})")
    outcomes = outcomes_of(report.get("kind", "sync"))
    header = ("entity", "compared" if report.get("kind") == "compare" else "extracted", *outcomes, "overdue")
    print("  ".join(f"{h:>12}" for h in header))
    for entity, body in report.get("entities", {}).items():
        cells = (entity, body["extracted"], *(body["outcomes"][o] for o in outcomes), body["overdue"])
        print("  ".join(f"{c:>12}" for c in cells))
    for entity, drift in (report.get("quiet_drift") or {}).items():
        found = ", ".join(f"{n} {klass}" for klass, n in drift["counts"].items())
        print(f"quiet drift in {entity}: {found}")
    for name in ("path", "plan"):
        if report.get(name):
            print(f"{'report' if name == 'path' else 'planned changes'}: {report[name]}")


def _summary(args: argparse.Namespace) -> int:
    store, config = Store(), load_config()
    classes = REPORTED_CLASSES
    width = max(18, *(len(flow) + 2 for flow in config.flows))
    named = max(12, *(len(entity) + 2 for entity in config.entities))
    print(f"{'flow':<{width}}{'entity':<{named}}" + "".join(f"{c:>12}" for c in (*classes, "overdue", "quarantined")))
    for flow in config.flows:
        totals: dict[str, dict[str, int]] = {}
        for run in runs.latest(store, flow, args.runs):
            if run["dry_run"]:
                continue
            for entity, counts in runs.entity_counts(store, run["run_id"]).items():
                bucket = totals.setdefault(entity, {})
                for name in (*classes, "overdue", "quarantined"):
                    bucket[name] = bucket.get(name, 0) + int(counts.get(name, 0))
        for entity in config.load_order(config.flows[flow].entities):
            row = totals.get(entity, {})
            cells = (row.get(c, 0) for c in (*classes, "overdue", "quarantined"))
            print(f"{flow:<{width}}{entity:<{named}}" + "".join(f"{n:>12,}" for n in cells))
    print("counts are summed over the runs: a record retried by a later run counts in each run")
    print(f"reports: {state_dir() / 'reports'}")
    return 0


def _exceptions_list(args: argparse.Namespace) -> int:
    rows = queue.list_exceptions(
        Store(), flow=args.flow, entity=args.entity, **{"class": getattr(args, "class")}, status=args.status
    )
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'id':>6}  {'status':<9} {'flow':<16} {'entity':<11} {'key':<14} {'class':<11} {'check':<15} reason")
    for r in rows:
        print(
            f"{r['id']:>6}  {r['status']:<9} {r['flow']:<16} {r['entity']:<11} {_short(r['key']):<14} "
            f"{r['class']:<11} {r['check_name']:<15} {r['reason']}"
        )
    print(f"{len(rows)} exception(s)")
    return 0


def _short(key: str, width: int = 14) -> str:
    return key if len(key) <= width else key[: width - 1] + "…"


def _exceptions_show(args: argparse.Namespace) -> int:
    print(json.dumps(queue.get(Store(), args.id), indent=2, default=str))
    return 0


def _decide(action: str, default_reason: str = "") -> Callable[[argparse.Namespace], int]:
    """A person's decision from the shell, by the rules of ``store.triage``, recorded as the shell's user."""

    def handler(args: argparse.Namespace) -> int:
        store = Store()
        for exception_id in args.ids:
            queue.get(store, exception_id)  # an unknown id is an error, before anything changes
        reason = getattr(args, "reason", None) or default_reason
        selection = triage.Selection(flows=None, ids=tuple(args.ids))
        print(triage.describe(triage.decide(store, selection, action, reason, f"{getpass.getuser()} (shell)")))
        return 0

    return handler


if __name__ == "__main__":
    sys.exit(main())
