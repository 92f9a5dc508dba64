"""Read the four YAML files of a configuration directory into one validated ``Config``.

``systems.yaml``, ``entities.yaml``, ``mappings.yaml`` and ``flows.yaml`` are parsed and
validated with pydantic, then cross-checked (references, cycles, ownership), so a bad file
stops everything before a single record moves. Every error names the file, the path inside
the document and the problem. User-written Great Expectations checks are built by
``truesync.quality.checks.check_expectations`` (GX is slow to import, and DAG parsing
must not pay for it).

A system's block, written under its kind's name (``rest:``), is validated with the kind's
own model (``truesync.connectors.kinds``), and its errors are located under that name.
Code tables live one per file in ``codes/`` (``codes/pos_events.yaml`` is table
``pos_events``); mappings name them in ``code_tables``. A key written twice in one mapping of
any file is an error, not the last one silently winning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from truesync.config.crosscheck import cross_check
from truesync.config.models import (
    CodeTable,
    Config,
    ConfigError,
    EntityConfig,
    FlowConfig,
    SystemConfig,
    SystemMapping,
    check_name,
)
from truesync.connectors.kinds import KINDS
from truesync.support.paths import config_dir


def _system(body: Any) -> SystemConfig:
    """A system, the block under its kind's name validated by the kind's model into ``settings``."""
    kind = KINDS.get(str(body.get("kind"))) if isinstance(body, dict) else None
    if kind is None or kind.settings is None or kind.name not in body:
        return SystemConfig.model_validate(body)
    try:
        settings = kind.settings.model_validate(body[kind.name])
    except ValidationError as exc:
        raise _under(kind.name, exc) from exc
    return SystemConfig.model_validate({"settings": settings, **{k: v for k, v in body.items() if k != kind.name}})


def _under(key: str, exc: ValidationError) -> ValidationError:
    """The errors of a nested block, located under its key."""
    return ValidationError.from_exception_data(exc.title, [{**e, "loc": (key, *e["loc"])} for e in exc.errors()])


_FILES: dict[str, tuple[str, Callable[[Any], BaseModel]]] = {
    "systems": ("systems.yaml", _system),
    "entities": ("entities.yaml", EntityConfig.model_validate),
    "mappings": ("mappings.yaml", SystemMapping.model_validate),
    "flows": ("flows.yaml", FlowConfig.model_validate),
}


def _read_yaml(path: Path) -> Any:
    """A YAML document; invalid YAML and a key written twice in one mapping are errors of the file."""
    try:
        text = path.read_text()
        twice = _key_twice(yaml.compose(text, Loader=yaml.SafeLoader), [])
        if twice is not None:
            where, key, line = twice
            raise ConfigError(str(path), ".".join(where), f"'{key}' is written twice (again on line {line})")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"not valid YAML: {exc}") from exc


def _key_twice(node: yaml.Node | None, where: list[str]) -> tuple[list[str], str, int] | None:
    """The first mapping key written twice under ``node``: its path, the key and the line of the repeat."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                return where, name, key.start_mark.line + 1
            seen.add(name)
            found = _key_twice(value, [*where, name])
            if found is not None:
                return found
    if isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            found = _key_twice(item, [*where, str(position)])
            if found is not None:
                return found
    return None


def _read_section(directory: Path, section: str) -> dict[str, Any]:
    filename, parse = _FILES[section]
    path = directory / filename
    if not path.is_file():
        raise ConfigError(str(path), "", "file not found")
    document = _read_yaml(path) or {}
    if not isinstance(document, dict) or not isinstance(document.get(section), dict):
        raise ConfigError(str(path), section, f"expected a mapping under top-level key '{section}'")
    parsed: dict[str, Any] = {}
    for name, body in document[section].items():
        try:
            check_name(str(name))
            parsed[str(name)] = parse(body)
        except ValidationError as exc:
            raise _located(path, [section, str(name)], exc) from exc
        except ValueError as exc:
            raise ConfigError(str(path), f"{section}.{name}", str(exc)) from exc
    return parsed


def _located(path: Path, where: list[str], exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    return ConfigError(str(path), ".".join([*where, *(str(p) for p in first["loc"])]), first["msg"])


def _code_tables(directory: Path) -> dict[str, CodeTable]:
    """Every ``codes/<name>.yaml``: a table with its version, description and codes."""
    tables = {}
    for path in sorted((directory / "codes").glob("*.yaml")):
        body = _read_yaml(path) or {}
        if not isinstance(body, dict):
            raise ConfigError(str(path), "", "expected a mapping with version and codes")
        try:
            tables[path.stem] = CodeTable.model_validate({**body, "name": check_name(path.stem)})
        except ValidationError as exc:
            raise _located(path, [], exc) from exc
        except ValueError as exc:
            raise ConfigError(str(path), "", f"the file name: {exc}") from exc
    return tables


def load_config(directory: Path | str | None = None) -> Config:
    """Read, validate and cross-check the configuration directory (``TRUESYNC_CONFIG_DIR`` by default)."""
    base = Path(directory) if directory else config_dir()
    if not base.is_dir():
        raise ConfigError(str(base), "", "configuration directory not found")
    sections = {section: _read_section(base, section) for section in _FILES}
    config = Config(directory=base, code_tables=_code_tables(base), **sections)
    for mapping in config.mappings.values():
        for entity in mapping.entities.values():
            entity.use_tables(config.code_tables)
    cross_check(config)
    return config
