"""truesync's Airflow plugin apps in-process, behind Airflow's own auth manager, and a headless browser.

Shared by the airflow tier's report and dashboard tests. The auth manager is Airflow's
``SimpleAuthManager`` with per-DAG users (``one_dag_auth``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient
from one_dag_auth import OneDagAuthManager

from truesync.support.paths import PROJECT_ROOT

JWT_SECRET = "truesync-test-secret-" + "0123456789abcdef" * 4


Token = Callable[..., str]


def load_plugin(name: str) -> ModuleType:
    """``plugins/<name>.py`` as Airflow loads it from its plugins folder."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "plugins" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def plugin_client(name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, TestClient, Token]]:
    """The plugin's app in-process with Airflow's auth manager, and ``token(role, user)`` for its JWTs."""
    from airflow import settings
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"one_dag_auth.{OneDagAuthManager.__name__}")
    RevokedToken.__table__.create(settings.engine, checkfirst=True)  # token checks look up revoked tokens
    manager = create_auth_manager()
    plugin = load_plugin(name)

    def token(role: str | None, user: str = "reviewer") -> str:
        return manager.generate_jwt(SimpleAuthManagerUser(username=user, role=role))

    with TestClient(plugin.app) as client:
        yield plugin, client, token


def browser() -> str | None:
    """Debian's chromium; under ``CI=true`` its absence fails the test instead of skipping it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def screenshot(page: Path, shot: Path, width: int, height: int) -> tuple[int, int, bytes]:
    """A headless chromium screenshot of a page file; returns the PNG's width, height and scanlines."""
    quiet = ("--disable-background-networking", "--disable-extensions", "--no-first-run", "--hide-scrollbars")
    done = subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *quiet,
         f"--user-data-dir={shot.parent / (shot.stem + '-profile')}", f"--screenshot={shot}",
         f"--window-size={width},{height}", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    return png_pixels(shot.read_bytes())


def png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and the inflated scanlines of a PNG (filter bytes included)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, data = 8, 0, 0, b""
    while pos < len(png):
        (length,), kind = struct.unpack(">I", png[pos : pos + 4]), png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            data += body
        pos += 12 + length
    return width, height, zlib.decompress(data)
