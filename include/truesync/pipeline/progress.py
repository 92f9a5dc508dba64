"""What a run tells its log: the story of each task, in a few lines a person reads.

The stages call this module at their boundaries: when a task starts (flow, entity, window,
partition), once per chunk (records read, or classified, written and held, with running
totals) and when it ends (counts per class and outcome, exceptions opened and resolved, the
slowest stage, the report). The lines go to Python ``logging`` under ``truesync.pipeline.<stage>``
at INFO (problems of the run at WARNING): in Airflow they land in the task log, at the level
set by ``[logging] logging_level``; ``truesync run`` prints them on stderr (``printed``).

No line carries personal data or a secret: offending values in reasons are masked as in the
reports (``reporting.masking``), whatever ``quality.mask_pii`` says, and every line is scrubbed
of e-mail addresses and of passwords in connection URLs before it is logged.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TextIO

from truesync.config import Config
from truesync.core.classify import REPORTED_CLASSES
from truesync.pipeline.window import Window
from truesync.reporting.masking import mask, mask_field_reason
from truesync.reporting.report import OUTCOMES
from truesync.store import Store, review

LOGGER = "truesync"
HELD_REASONS_SHOWN = 20
HELD_EXAMPLES_SHOWN = 2
EXAMPLE_CHARS = 140
CLI_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@\s]+@")


class Task(Protocol):
    """What a stage works on (``pipeline.job.EntityJob``): the flow, entity and run of a task."""

    config: Config
    store: Store
    flow: str
    entity: str
    run_id: str


def logger(stage: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER}.pipeline.{stage}")


def scrub(text: str) -> str:
    """The text with e-mail addresses masked and passwords in URLs hidden: the last guard before a log line."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:***@", text)
    return _EMAIL.sub(lambda m: mask(m.group(0), "email") or "***", text)


def _emit(stage: str, text: str, level: int = logging.INFO) -> None:
    log = logger(stage)
    if log.isEnabledFor(level):
        log.log(level, "%s", scrub(text))


def _window(window: Window) -> str:
    return f"{window.start.isoformat()}..{window.end.isoformat()}"


def _pairs(counts: Mapping[str, Any], names: tuple[str, ...]) -> str:
    return " ".join(f"{name}={int(counts.get(name, 0) or 0)}" for name in names)


def _all(counts: Mapping[str, Any]) -> str:
    return _pairs(counts, tuple(counts))


def _seconds(value: Any) -> str:
    return f"{float(value or 0.0):.2f}s"


# --- plan ----------------------------------------------------------------------------------------


def run_started(flow: str, run_id: str, window: Window, dry_run: bool, kind: str = "sync") -> None:
    dry = " (dry run: nothing written)" if dry_run else ""
    what = "compare started: every record of" if kind == "compare" else "run started:"
    _emit("plan", f"{what} flow {flow}, window {_window(window)}, run {run_id}{dry}")


# --- extract -------------------------------------------------------------------------------------


class Extracting:
    """One extract task: its start line, a line per batch read with the running total, its end line."""

    def __init__(self, job: Task, window: Window) -> None:
        self.job, self.batches, self.read_by = job, 0, Counter[str]()
        source = job.config.flows[job.flow].source
        _emit(
            "extract",
            f"extract started: flow {job.flow}, entity {job.entity}, window {_window(window)}, "
            f"partition all, run {job.run_id}, source {source}",
        )

    def read(self, what: str, rows: int) -> None:
        """A batch of ``rows`` records read: ``window``, ``incomplete`` (no key or change time) or ``retries``."""
        self.batches += 1
        self.read_by[what] += int(rows)
        _emit(
            "extract",
            f"extract {self.job.entity}: batch {self.batches} ({what}) read {int(rows)} records, "
            f"{sum(self.read_by.values())} so far",
        )

    def done(self, staged: int, seconds: float) -> None:
        parts = ", ".join(f"{what} {n}" for what, n in self.read_by.items()) or "nothing"
        _emit(
            "extract",
            f"extract finished: flow {self.job.flow}, entity {self.job.entity}: read {sum(self.read_by.values())} "
            f"records ({parts}) in {self.batches} batches, staged {int(staged)} distinct records "
            f"in {_seconds(seconds)}",
        )


def compared(job: Task, scanned: Mapping[str, int], kept: int, staged: int, seconds: float) -> None:
    """A compare's scan of one entity: rows read per side, records in sync, records staged to repair."""
    _emit(
        "compare",
        f"compare {job.entity}: read {scanned.get('S', 0)} source and {scanned.get('T', 0)} target rows; "
        f"{kept} in sync, {staged} staged to classify and repair, in {_seconds(seconds)}",
    )


def reprocess_staged(job: Task, tables: list[str], staged: int, seconds: float) -> None:
    """A reprocess found the records behind the current code tables and staged them."""
    _emit(
        "extract",
        f"reprocess {job.entity}: staged {staged} records synced under other versions than "
        f"{', '.join(tables)} or held for a code they translate, in {_seconds(seconds)}",
    )


# --- partition and sync --------------------------------------------------------------------------


def _bounds(part: Any) -> str:
    return f"{part.name} keys [{part.lo or '-'}..{part.hi or '-'})"


def partitioned(job: Task, parts: list[Any]) -> None:
    listed = ", ".join(_bounds(p) for p in parts[:5]) + (f", ... {len(parts) - 5} more" if len(parts) > 5 else "")
    _emit(
        "load", f"partition: flow {job.flow}, entity {job.entity}: {len(parts)} partition(s) to sync: {listed or '-'}"
    )


def _classified(counts: Mapping[str, Any]) -> int:
    return sum(int(counts.get(c, 0) or 0) for c in REPORTED_CLASSES)


def _written(counts: Mapping[str, Any]) -> int:
    return int(counts.get("created", 0) or 0) + int(counts.get("updated", 0) or 0)


class Syncing:
    """One sync task (a partition of an entity): its start line, a line per chunk, its end line."""

    def __init__(self, job: Task, window: Window, part: Any, dry_run: bool) -> None:
        self.job, self.part, self.dry_run, self.chunks = job, part, dry_run, 0
        self.seen: Counter[str] = Counter()
        target = job.config.flows[job.flow].target
        dry = " (dry run: nothing written)" if dry_run else ""
        _emit(
            "load",
            f"sync started: flow {job.flow}, entity {job.entity}, window {_window(window)}, "
            f"partition {_bounds(part)}, run {job.run_id}, target {target}{dry}",
        )

    def chunk(self, totals: Mapping[str, Any]) -> None:
        """After a chunk: what it classified, wrote and held, and the partition's totals so far."""
        self.chunks += 1
        now = Counter({k: int(v) for k, v in totals.items()})
        step = now - self.seen
        self.seen = now
        verb = "would write" if self.dry_run else "written"
        _emit(
            "load",
            f"sync {self.job.entity} {self.part.name}: chunk {self.chunks}: classified {_classified(step)} "
            f"({_pairs(step, REPORTED_CLASSES)}), {verb} {_written(step)}, held {step['quarantined']}; "
            f"so far classified {_classified(now)}, {verb} {_written(now)}, held {now['quarantined']}",
        )

    def done(self, counts: Mapping[str, Any]) -> None:
        c = counts
        _emit(
            "load",
            f"sync finished: flow {self.job.flow}, entity {self.job.entity}, partition {self.part.name}: "
            f"{_classified(c)} records in {self.chunks} chunks; classes {_pairs(c, REPORTED_CLASSES)}; "
            f"outcomes {_pairs(c, OUTCOMES)}; overdue {int(c.get('overdue', 0))}; exceptions opened "
            f"{int(c.get('exceptions_opened', 0))}, resolved {int(c.get('exceptions_resolved', 0))}; "
            f"{_seconds(c.get('sync_seconds'))} (writing {_seconds(c.get('load_seconds'))})",
        )


# --- finalize ------------------------------------------------------------------------------------


def finalize_started(flow: str, run: Mapping[str, Any], entities: list[str]) -> None:
    window = Window(run["window_start"], run["window_end"])
    dry = " (dry run)" if run.get("dry_run") else ""
    _emit(
        "finalize",
        f"finalize started: flow {flow}, entities {', '.join(entities)}, window {_window(window)}, "
        f"run {run['run_id']}{dry}",
    )


def slowest_stage(entities: Mapping[str, Any]) -> tuple[str, str, float] | None:
    """(stage, entity, seconds) of the longest extract, classify or load of the run."""
    timed = [
        (stage.removesuffix("_seconds"), entity, float(seconds))
        for entity, body in entities.items()
        for stage, seconds in (body.get("durations") or {}).items()
    ]
    return max(timed, key=lambda t: t[2]) if timed else None


def finalize_finished(config: Config, store: Store, report: Mapping[str, Any]) -> None:
    """Per entity the counts, then why records were held (masked), then the run's verdict and report."""
    flow, run_id, entities = report["flow"], report["run_id"], report.get("entities", {})
    for entity, body in entities.items():
        ex = body["exceptions"]
        broken = "" if body["conserved"] else " CONSERVATION BROKEN"
        _emit(
            "finalize",
            f"finalize {entity}: extracted {body['extracted']}; classes {_all(body['classes'])}; "
            f"outcomes {_all(body['outcomes'])}; overdue {body['overdue']}; "
            f"exceptions opened {ex['opened']}, resolved {ex['resolved']}{broken}",
            logging.INFO if body["conserved"] else logging.WARNING,
        )
    for line in held_reasons(config, store, flow, run_id):
        _emit("finalize", line)
    quality = report.get("quality") or {}
    for alert in quality.get("alerts", []):
        _emit("finalize", f"alert: {alert.get('message', alert)}", logging.WARNING)
    for crossed in quality.get("failed_thresholds", []):
        _emit("finalize", f"threshold crossed: {crossed}", logging.WARNING)
    totals = report.get("totals", {})
    opened = sum(b["exceptions"]["opened"] for b in entities.values())
    resolved = sum(b["exceptions"]["resolved"] for b in entities.values())
    slowest = slowest_stage(entities)
    slow = f"{slowest[0]} of {slowest[1]} ({_seconds(slowest[2])})" if slowest else "-"
    watermark = f"watermark now {report['watermark']}" if report.get("watermark") else "watermark unchanged"
    _emit(
        "finalize",
        f"finalize finished: flow {flow}, run {run_id}: {report['status']}; extracted {totals.get('extracted', 0)}, "
        f"{_all({o: n for o, n in totals.items() if o != 'extracted'})}; "
        f"exceptions opened {opened}, resolved {resolved}; slowest stage {slow}; "
        f"{watermark}; report {report.get('path')} (page {report.get('html')})",
        logging.INFO if report["status"] == "success" else logging.WARNING,
    )


def held_reasons(config: Config, store: Store, flow: str, run_id: str) -> list[str]:
    """One short line per reason records were held, most frequent first, with masked examples."""
    lines = []
    for group in review.reason_groups(store, run_id, HELD_REASONS_SHOWN):
        entity, check, column = group["entity"], group["check_name"], group["field"]
        examples = review.reason_examples(store, run_id, entity, check, column, HELD_EXAMPLES_SHOWN)
        shown = "; ".join(f"{ex['key']}: {_short(_masked(config, entity, column, ex), check)}" for ex in examples)
        on = f" on {column}" if column else ""
        lines.append(f"held {entity}: {group['count']} x {check}{on}, e.g. {shown}")
    return lines


def _masked(config: Config, entity: str, column: str | None, example: Mapping[str, Any]) -> str:
    """The example's reason with its offending value masked when the field holds personal data."""
    reason = mask_field_reason(config, entity, column, example.get("reason") or "", example.get("value")) or ""
    return scrub(reason)  # masked before shortened, so a cut never leaves half a value readable


def _short(text: str, check: str) -> str:
    text = " ".join(text.split()).removeprefix(f"{check}: ")  # the line names the check already
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 3] + "..."


def run_failed(run_id: str, reason: str) -> None:
    _emit("finalize", f"run failed: run {run_id}: {reason}", logging.WARNING)


# --- the command line ----------------------------------------------------------------------------


@contextmanager
def printed(stream: TextIO | None = None, level: int = logging.INFO) -> Iterator[None]:
    """Print the engine's log lines on ``stream`` (stderr) for the length of a ``truesync`` command."""
    root = logging.getLogger(LOGGER)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(CLI_FORMAT))
    handler.setLevel(level)
    old_level = root.level
    if root.getEffectiveLevel() > level:
        root.setLevel(level)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
