"""Systems of kind ``file`` as the configuration sees them: the ``file:`` block, the location, the roles."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from config_edits import edit, expect_error

from truesync.config import load_config
from truesync.connectors.file.location import Location, file_location
from truesync.connectors.file.reading import read_rows
from truesync.connectors.file.settings import DatasetConfig, FileConfig
from truesync.support.connections import ConnectionNotFound

POS = {"kind": "file", "connection": "truesync_tills", "file": {"datasets": {"events": {"glob": "*/*.csv"}}}}
EVENT = {"table": "events", "key": "order_ref", "cursor": "event_time", "fields": {"order_id": "order_ref"}}


def with_pos(directory: Path, **block: object) -> None:
    edit(directory, "systems.yaml", lambda d: d["systems"].update(tills={**POS, "file": {**POS["file"], **block}}))
    edit(directory, "mappings.yaml", lambda d: d["mappings"].update(tills={"version": 1, "entities": {"order": EVENT}}))


def test_a_file_block_loads_with_its_defaults(cfg: Path) -> None:
    with_pos(cfg, settle="30s")
    settings = load_config(cfg).systems["tills"].settings
    assert isinstance(settings, FileConfig)
    assert settings.settle == timedelta(seconds=30) and settings.partial_suffixes == [".part", ".tmp"]
    assert settings.datasets["events"] == DatasetConfig(glob="*/*.csv", format="csv", delimiter=",", encoding="utf-8")


@pytest.mark.parametrize(
    ("dataset", "key", "problem"),
    [
        ({"glob": "/srv/*.csv"}, "glob", "must be a glob relative to the base URL"),
        ({"glob": "../other/*.csv"}, "glob", "without '..'"),
        ({"glob": "*.csv", "encoding": "klingon"}, "encoding", "not a text encoding"),
        ({"glob": "*.csv", "format": "xlsx"}, "format", "'csv' or 'jsonl'"),
        ({"glob": "*.csv", "delimiter": ";;"}, "delimiter", "at most 1 character"),
    ],
)
def test_a_dataset_is_checked(cfg: Path, dataset: dict[str, str], key: str, problem: str) -> None:
    with_pos(cfg, datasets={"events": dataset})
    expect_error(cfg, "systems.yaml", f"systems.tills.file.datasets.events.{key}", problem)


def test_a_mapping_table_must_be_a_dataset(cfg: Path) -> None:
    with_pos(cfg)
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["tills"]["entities"]["order"].update(table="tills"))
    expect_error(cfg, "mappings.yaml", "mappings.tills.entities.order.table", "'tills' is not a dataset")


def test_a_file_system_is_never_a_target(cfg: Path) -> None:
    with_pos(cfg)
    flow = {"source": "webshop", "target": "tills", "entities": ["order"]}
    edit(cfg, "flows.yaml", lambda d: d["flows"].update(shop_to_pos=flow))
    expect_error(cfg, "flows.yaml", "flows.shop_to_pos.target", "kind 'file' are read, never written")


def test_the_location_is_a_url_in_the_environment_or_a_connection_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_POS", "file:///srv/pos-drop/")
    assert file_location("pos") == Location("file:///srv/pos-drop", None)
    monkeypatch.setenv("AIRFLOW_CONN_POS", '{"conn_type": "aws", "login": "AKIA", "password": "s", '
                       '"extra": {"url": "s3://bucket/pos"}}')  # fmt: skip
    assert file_location("pos") == Location("s3://bucket/pos", "pos")
    assert Location("sftp://user:secret@host/drop", "pos").shown() == "sftp://host/drop"
    monkeypatch.setenv("AIRFLOW_CONN_POS", '{"conn_type": "aws"}')
    with pytest.raises(ConnectionNotFound, match="no extra 'url'"):
        file_location("pos")
    monkeypatch.setenv("AIRFLOW_CONN_POS", "/srv/pos-drop")
    with pytest.raises(ConnectionNotFound, match="a URL such as file:///"):
        file_location("pos")


def test_csv_rows_keep_their_line_and_unreadable_rows_say_why() -> None:
    data = b'id,ts,note\n1,2026-11-02T09:00:00,"two\nlines"\n\n2,,\n3,x\n'
    rows = read_rows(data, "T1/a.csv", DatasetConfig(glob="*.csv"), ["id", "ts"]).to_dict("records")
    assert rows == [
        {"id": "1", "ts": "2026-11-02T09:00:00", "_origin": "T1/a.csv line 2", "_problem": None},
        {"id": "2", "ts": None, "_origin": "T1/a.csv line 5", "_problem": None},
        {"id": None, "ts": None, "_origin": "T1/a.csv line 6",
         "_problem": "T1/a.csv line 6 has 2 fields where the header has 3"},
    ]  # fmt: skip


def test_a_whole_file_that_cannot_be_read_is_one_row() -> None:
    latin = DatasetConfig(glob="*.csv", delimiter=";")
    assert read_rows(b"id;ts\n1;2\n", "a.csv", latin, ["id", "ts"])["id"].tolist() == ["1"]
    (row,) = read_rows(b"\xff\xfeid", "a.csv", DatasetConfig(glob="*.csv"), ["id"]).to_dict("records")
    assert row["_problem"] == "a.csv is not utf-8 text (byte 0)"
    assert read_rows(b"", "a.csv", DatasetConfig(glob="*.csv"), ["id"]).empty
    yaml.safe_dump(row)  # a queue payload: plain values only


# ---------------------------------------------------------------- code tables


def with_code_table(directory: Path, body: str, name: str = "pos_states") -> None:
    with_pos(directory)
    (directory / "codes").mkdir(exist_ok=True)
    (directory / "codes" / f"{name}.yaml").write_text(body)
    edit(directory, "mappings.yaml", lambda d: d["mappings"]["tills"]["entities"]["order"].update(
        fields={"order_id": "order_ref", "status": "code"}, code_tables={"status": "pos_states"}))  # fmt: skip


def test_a_code_table_loads_with_its_version_and_times(cfg: Path) -> None:
    with_code_table(
        cfg, "version: 3\ncodes:\n  A00: completed\n  X9: {value: offline, valid_from: 2026-11-05T00:00:00+01:00}\n"
    )
    from truesync.config import load_config

    config = load_config(cfg)
    table = config.entity_mapping("tills", "order").tables["status"]
    assert table.label == "pos_states@3" and table.codes["A00"].value == "completed"
    assert str(table.codes["X9"].valid_from) == "2026-11-04 23:00:00"  # naive UTC
    assert config.code_tables_of("webshop_to_crm", "order") == []


@pytest.mark.parametrize(
    ("body", "where", "problem"),
    [
        ("version: 1\ncodes:\n  A00: completed\n  A00: failed\n", "codes", "'A00' is written twice (again on line 4)"),
        ("codes:\n  A00: completed\n", "version", "Field required"),
        ("version: 1\ncodes: {}\n", "codes", "at least 1 item"),
        ("version: 1\ncodes:\n  A00: {value: x, since: 2026}\n", "codes.A00.since", "Extra inputs"),
    ],
)
def test_a_bad_code_table_is_named_by_file_and_path(cfg: Path, body: str, where: str, problem: str) -> None:
    with_code_table(cfg, body)
    expect_error(cfg, "codes/pos_states.yaml", where, problem)


def test_a_mapping_names_an_existing_table_for_a_mapped_field(cfg: Path) -> None:
    with_code_table(cfg, "version: 1\ncodes: {A00: completed}\n", name="other")
    expect_error(cfg, "mappings.yaml", "mappings.tills.entities.order.code_tables.status", "no code table 'pos_states'")
    (cfg / "codes" / "pos_states.yaml").write_text("version: 1\ncodes: {A00: completed}\n")
    edit(
        cfg, "mappings.yaml", lambda d: d["mappings"]["tills"]["entities"]["order"].update(codes={"status": {"A": "a"}})
    )
    expect_error(cfg, "mappings.yaml", "mappings.tills.entities.order.code_tables.status", "inline codes too")


def test_a_key_written_twice_in_any_configuration_file_is_refused(cfg: Path) -> None:
    text = (cfg / "flows.yaml").read_text()
    (cfg / "flows.yaml").write_text(
        text.replace("  webshop_to_crm:\n", "  webshop_to_crm:\n    schedule: '@hourly'\n", 1)
    )
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm", "'schedule' is written twice")
