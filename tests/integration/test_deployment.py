"""The production deployment: docker-compose.yaml and the image, checked without Docker,
and the preflight that makes a wrong URL fail fast with the setting's name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import URL

from truesync.config import load_config
from truesync.pipeline.celery_workers import CELERY_CONFIG
from truesync.pipeline.dags import TASK_MODULES, preloaded_workers
from truesync.support.connections import env_var
from truesync.support.paths import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
)
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)[^}]*\}")  # $${X} is the container shell's


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _pinned_airflow() -> str:
    match = re.search(r"^apache-airflow==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.M)
    assert match
    return match.group(1)


def test_every_service_of_the_airflow_layout_is_there(compose: dict) -> None:
    assert set(compose["services"]) == {*AIRFLOW_SERVICES, "airflow-init", "postgres", "redis"}


def test_services_are_healthchecked_and_wait_for_init(compose: dict) -> None:
    services = compose["services"]
    for name in (*AIRFLOW_SERVICES, "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_celery_workers_load_what_every_task_imports_once(compose: dict) -> None:
    """The workers take truesync's Celery settings, so tasks inherit their stage's imports."""
    setting = "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"
    assert compose["services"]["airflow-worker"]["environment"][setting] == preloaded_workers()[setting]
    assert CELERY_CONFIG["imports"] == TASK_MODULES


def test_init_checks_settings_then_migrates_both_databases(compose: dict) -> None:
    command = " ".join(compose["services"]["airflow-init"]["command"])
    steps = [step.strip() for step in command.split("-c", 1)[1].split("&&")]
    assert steps[:3] == ["truesync preflight", "airflow db migrate", "truesync store migrate"]
    pools = "/tmp/truesync-pools.json"
    assert steps[-2:] == [f"truesync pools > {pools}", f"airflow pools import {pools}"], "no task runs without its pool"


def test_image_is_built_from_the_pinned_airflow(compose: dict) -> None:
    version = _pinned_airflow()
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(rf"^FROM apache/airflow:{re.escape(version)}-python3\.11$", dockerfile, re.M)
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["build"] == "." and service["image"] == f"truesync-airflow:{version}"
    for copied in ("requirements.txt", "constraints.txt"):
        assert copied in dockerfile and (PROJECT_ROOT / copied).is_file()


def test_files_the_services_mount_exist(compose: dict) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (PROJECT_ROOT / source).is_file(), source


def test_every_variable_is_documented_in_env_example_with_a_placeholder() -> None:
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    example = {}
    for line in (PROJECT_ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, value = line.split("=", 1)
            example[name] = value
    assert used == set(example), f"undocumented: {used - set(example)}, unused: {set(example) - used}"
    for name, value in example.items():
        if any(word in name for word in ("PASSWORD", "SECRET", "KEY")) or "@" in value:
            assert "change-me" in value or "replace-with" in value, f"{name} looks like a real secret"


def test_every_configured_system_has_a_connection(compose: dict) -> None:
    env = compose["services"]["airflow-worker"]["environment"]
    for system in load_config().systems.values():
        assert env_var(system.connection) in env, system.connection
    assert "AIRFLOW_CONN_TRUESYNC_STORE" in env


def _preflight(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "truesync.cli", "preflight"], env=env, capture_output=True, text=True, check=False
    )


def test_preflight_names_the_wrong_setting_and_never_the_password(state: Path, postgres_url: URL) -> None:
    env = {
        **os.environ,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_url.render_as_string(hide_password=False),
        "AIRFLOW_CONN_TRUESYNC_STORE": "postgresql+psycopg2://sync:s3cr3t@127.0.0.1:1/store",
        "AIRFLOW__CELERY__BROKER_URL": "redis://:s3cr3t@127.0.0.1:1/0",
    }
    done = _preflight(env)
    assert done.returncode == 1
    assert "ok   AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in done.stdout
    assert "FAIL AIRFLOW_CONN_TRUESYNC_STORE: cannot connect" in done.stderr
    assert "FAIL AIRFLOW__CELERY__BROKER_URL: cannot connect" in done.stderr
    assert "s3cr3t" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_preflight_passes_on_working_settings(state: Path, postgres_url: URL) -> None:
    url = postgres_url.render_as_string(hide_password=False)
    done = _preflight({**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url, "AIRFLOW_CONN_TRUESYNC_STORE": url})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ok   ") == 2
