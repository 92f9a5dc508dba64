"""Compare what the runs reported per record with the sandbox's ground-truth labels."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import MetaData, Table, select

from truesync.config import Config, EntityMapping
from truesync.connectors.registry import open_source
from truesync.core.canonical import to_canonical
from truesync.pipeline.extract import NULL_KEY_PREFIX
from truesync.pipeline.window import EPOCH
from truesync.sandbox.made import UNSEEN
from truesync.store import Store, queue
from truesync.store.schema import results, runs
from truesync.support.connections import sqlalchemy_url
from truesync.support.sqldb import open_engine


def first_results(store: Store, flow: str) -> pd.DataFrame:
    """Each record's result in the first run (by window) that saw it."""
    query = (
        select(results.c.entity, results.c.key, results.c["class"], results.c.outcome, results.c.overdue,
               results.c.check_name, runs.c.window_start)
        .join(runs, runs.c.run_id == results.c.run_id)
        .where(runs.c.flow == flow, runs.c.dry_run.is_(False))
    )  # fmt: skip
    with store.engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all())
    frame = frame.sort_values("window_start", kind="stable").drop_duplicates(["entity", "key"], keep="first")
    frame.loc[frame["key"].str.startswith(NULL_KEY_PREFIX), "key"] = ""
    return frame.drop(columns="window_start")


def differences(labels: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Rows where a labelled record's class, outcome, overdue flag or check differ.

    A record labelled more than once may end as any of its labels (two flows racing,
    ``Rows.label``); one labelled ``UNSEEN`` may also have no result at all.
    """
    want = labels.fillna({"check": ""}).rename(columns={"check": "check_name"})
    got = results.fillna({"check_name": ""})
    got["overdue"] = got["overdue"].astype(bool)
    want["overdue"] = want["overdue"].astype(str).str.lower() == "true"
    cols = ["entity", "key", "class", "outcome", "overdue", "check_name"]
    nameless = ["entity", "class", "outcome", "check_name"]
    null_want = want[want["key"] == ""].groupby(nameless).size()
    null_got = got[got["key"] == ""].groupby(nameless).size()
    if not null_want.equals(null_got):
        return pd.DataFrame({"null_keys_want": [null_want.to_dict()], "null_keys_got": [null_got.to_dict()]})
    want, got = want[want["key"] != ""], got[got["key"] != ""]
    merged = want[cols].merge(got[cols], on=["entity", "key"], how="outer", suffixes=("_want", "_got"), indicator=True)
    fits = merged["_merge"] == "both"
    for col in ("class", "outcome", "overdue", "check_name"):
        fits &= merged[f"{col}_want"] == merged[f"{col}_got"]
    fits |= (merged["_merge"] == "left_only") & (merged["class_want"] == UNSEEN)
    return merged[~fits.groupby([merged["entity"], merged["key"]]).transform("any")]


def drift(config: Config, flow: str, entity: str, until: str | None = None) -> set[str]:
    """Keys whose target differs from the source on a field the flow syncs and its source owns.

    A ``shared`` field is left out: the side that changed it last keeps it, so a target may
    rightly hold a newer value than the source. With ``until`` (ISO time), source records
    changed at or after it are left out: no run saw them yet.
    """
    spec, entity_spec = config.flows[flow], config.entities[entity]
    shared = config.shared_fields(flow, entity)
    fields = [entity_spec.key, *(f for f in config.synced_fields(flow, entity) if f not in shared)]
    frames = []
    for system in (spec.source, spec.target):
        mapping = config.entity_mapping(system, entity)
        canon = to_canonical(everything(config, system, mapping), mapping, entity_spec, fields)
        records = canon.records
        if until and system == spec.source:
            records = records[canon.source_ts < pd.Timestamp(until)]
        frames.append(records.dropna(subset=[entity_spec.key]).drop_duplicates(entity_spec.key, keep=False))
    source, target = (f.set_index(entity_spec.key)[fields[1:]] for f in frames)
    target = target.reindex(source.index)
    same = ((source == target) | (source.isna() & target.isna())).all(axis=1)
    return set(source.index[~same])


def everything(config: Config, system: str, mapping: EntityMapping) -> pd.DataFrame:
    """Every record of a mapped table (read whole, rows without key too) or endpoint (a listing over all time)."""
    if config.systems[system].kind == "sql":
        return _whole_table(config.systems[system].connection, mapping)
    frames = list(open_source(config, system).extract(mapping, EPOCH, datetime(9999, 1, 1), 100_000))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=mapping.columns)


def _whole_table(connection: str, mapping: EntityMapping) -> pd.DataFrame:
    engine = open_engine(sqlalchemy_url(connection))
    try:
        table = Table(mapping.table, MetaData(), schema=mapping.db_schema, autoload_with=engine)
        with engine.connect() as conn:
            return pd.DataFrame(conn.execute(select(table)).mappings().all(), dtype=object)
    finally:
        engine.dispose()


def held_keys(store: Store, flow: str, entity: str) -> set[str]:
    """Keys of the entity's open or retrying exceptions."""
    return {r["key"] for r in queue.list_exceptions(store, flow=flow, entity=entity) if r["status"] in queue.ACTIVE}
