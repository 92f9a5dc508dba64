"""The failures of a system that the engine and the DAGs treat differently."""

from __future__ import annotations


class SystemUnavailable(RuntimeError):
    """A transient failure (network, server down, lock timeout): worth retrying."""


class ConfigurationProblem(RuntimeError):
    """The system does not match the configuration (missing table or column): do not retry."""


class RecordsRejected(RuntimeError):
    """The system refused some records of a write (e.g. HTTP 422); the others were written.

    ``rejected`` maps each refused record's key to a reason naming system, endpoint and
    status; the loader quarantines those records and carries on.
    """

    def __init__(self, rejected: dict[str, str]) -> None:
        super().__init__(f"{len(rejected)} records refused by the target")
        self.rejected = rejected
