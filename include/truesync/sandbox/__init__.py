"""The demo: sandbox systems with labelled drift, their REST APIs, and a local Airflow.

Only the ``truesync sandbox`` commands, ``make demo``/``make up``, the tests and the
benchmarks import the modules of this package; the engine never does. This module itself
holds only the demo's defaults, so the CLI can show them without loading the demo.
"""

from datetime import date

DEMO_START = date(2026, 11, 1)  # first demo day
DEMO_DAYS = 3
DEFAULT_TOKEN = "sandbox-token"  # noqa: S105 - the sandbox's own demo credential, not a secret of anyone's
