"""An auth manager for tests: Airflow's ``SimpleAuthManager`` (roles, no per-DAG rights), plus one kind of
user it lacks, so per-flow rights can be proven in-process and in a real API server alike: a user named
``only-<dag id>`` holds its role's rights on that DAG and on no other, as a per-DAG auth manager (FAB,
Keycloak) grants them. Point ``[core] auth_manager`` at ``one_dag_auth.OneDagAuthManager``.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

ONLY = "only-"


class OneDagAuthManager(SimpleAuthManager):
    """``SimpleAuthManager``, except that a user named ``only-<dag id>`` may touch that DAG alone."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        name = user.get_name()
        if name.startswith(ONLY) and (details is None or details.id != name.removeprefix(ONLY)):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
