"""Great Expectations with truesync's settings, imported on first use.

Only user expectations (``quality.checks``) and Data Docs (``quality.datadocs``) need GX, and
importing it costs 1.7 s and 128 MiB (as installed), so a process whose entities have no user expectations
holds it only once it builds Data Docs. Airflow's workers import this module once
(``pipeline.dags.TASK_MODULES``), and every task forked from them inherits it.
"""

import great_expectations as gx  # analytics are off: the package's __init__ ran first
from great_expectations.execution_engine import pandas_execution_engine

# GX fingerprints every pandas batch below this many bytes (pandas' hash of every row, then MD5)
# for its batch markers, which truesync never reads: nearly half of what validating a chunk costs.
# GX 1.x has no option to turn it off but this threshold, so it is set to fingerprint nothing.
pandas_execution_engine.HASH_THRESHOLD = 0

__all__ = ["gx"]
