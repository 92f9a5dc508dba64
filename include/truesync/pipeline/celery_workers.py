"""The Celery workers' settings: Airflow's own, plus the modules every task imports, loaded once.

``[celery] celery_config_options`` names :data:`CELERY_CONFIG` (``pipeline.dags.preloaded_workers``;
``docker-compose.yaml`` sets it). Celery imports the ``imports`` in the worker before it forks its
pool, and stops the worker when one fails; Airflow forks each task from a pool process, so the task
inherits them, as with the LocalExecutor's forkserver.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from truesync.pipeline.dags import TASK_MODULES

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "imports": TASK_MODULES}
