"""The sandbox REST services for a test: served on free ports, connections pointed at them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from truesync.sandbox import rest as sandboxrest
from truesync.sandbox.api import DEFAULT_TOKEN, ServerThread


@contextmanager
def sandbox_apis(state: Path, token: str = DEFAULT_TOKEN) -> Iterator[dict[str, ServerThread]]:
    """Serve the seeds ``sandbox init`` wrote, wanting ``token``; ``AIRFLOW_CONN_TRUESYNC_<SYSTEM>``
    is set meanwhile."""
    servers = sandboxrest.serve(state / "sandbox", "127.0.0.1", 0, 0, token)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for system, server in servers.items():
                patch.setenv(
                    f"AIRFLOW_CONN_TRUESYNC_{system.upper()}",
                    f"http://:{quote(token, safe='')}@127.0.0.1:{server.port}",
                )
            yield servers
    finally:
        for server in servers.values():
            server.stop()
