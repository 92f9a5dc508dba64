"""Configuration: the version-controlled YAML (systems, entities, mappings, flows), validated.

``models`` holds the pydantic models, ``loader`` reads a directory into one ``Config`` and
``crosscheck`` checks what no single file can. Everything downstream takes a ``Config``.
"""

from truesync.config.loader import load_config
from truesync.config.models import (
    CHANGE_TIME,
    SHARED,
    CodeTable,
    CompareConfig,
    Config,
    ConfigError,
    DeletesConfig,
    EntityConfig,
    EntityMapping,
    ExpectationSpec,
    FieldSpec,
    FinanceConfig,
    FlowConfig,
    MinorUnits,
    QualityConfig,
    ReconcileConfig,
    RetentionConfig,
    SystemConfig,
    check_columns,
)
from truesync.support.durations import parse_duration

__all__ = [
    "CHANGE_TIME",
    "SHARED",
    "CodeTable",
    "Config",
    "CompareConfig",
    "ConfigError",
    "DeletesConfig",
    "EntityConfig",
    "EntityMapping",
    "MinorUnits",
    "ExpectationSpec",
    "FieldSpec",
    "FlowConfig",
    "QualityConfig",
    "FinanceConfig",
    "ReconcileConfig",
    "RetentionConfig",
    "SystemConfig",
    "check_columns",
    "load_config",
    "parse_duration",
]
