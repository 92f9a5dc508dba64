"""Sandbox runs with their HTML pages, and a parser that reads the pages back.

Shared by the report tests of the integration tier (the pages) and of the airflow tier (a
browser, the Airflow plugin); the ``runs`` and ``shared_runs`` fixtures build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from truesync.config import Config
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.reporting import html as report_html
from truesync.sandbox import systems as sandbox
from truesync.store import Store

FLOW = "webshop_to_crm"
DEMO_START = datetime.combine(sandbox.DEMO_START, datetime.min.time())
RUNS = ((FLOW, 0), ("erp_to_stockctl", 0), (FLOW, 1))


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class Page(HTMLParser):
    """Every element with its attributes and the text directly inside it."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in ("meta", "br", "circle", "line", "polyline", "img"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].text += data

    def cells(self, **wanted: str | None) -> list[Element]:
        """``td`` elements whose data attributes match: a value, or None for 'attribute absent'."""
        found = []
        for e in self.elements:
            if e.tag == "td" and all(
                (f"data-{k}" not in e.attrs) if v is None else e.attrs.get(f"data-{k}") == v for k, v in wanted.items()
            ):
                found.append(e)
        return found

    def number(self, **wanted: str | None) -> int:
        (cell,) = self.cells(**wanted)
        return int(cell.text.strip().replace(",", "") or 0)


@dataclass
class Runs:
    config: Config
    store: Store
    state: Path
    reports: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def made(cls, config: Config, store: Store, state: Path) -> Runs:
        """The ``RUNS`` over the sandbox ``sandbox init`` wrote, each with its page, then the index."""
        handle = cls(config, store, state)
        for flow, day in RUNS:
            handle.run(flow, day)
        report_html.render_index(handle.store)
        return handle

    def run(self, flow: str, day: int) -> dict[str, Any]:
        start = DEMO_START + timedelta(days=day)
        window = Window(start - self.config.flows[flow].lookback, start + timedelta(days=1))
        report = run_flow(self.config, self.store, flow, f"{flow}:day{day}", window)
        report_html.render_run(self.config, self.store, report)
        self.reports.append(report)
        return report


def page_of(report: dict[str, Any]) -> tuple[str, Page]:
    html = report_html.html_path(report["flow"], report["run_id"]).read_text()
    return html, Page(html)
