"""Editing a private copy of the shipped configuration, and expecting the error it must raise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from truesync.config import ConfigError, load_config

SHIPPED = Path(__file__).resolve().parents[1] / "include" / "config"


def edit(directory: Path, filename: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / filename
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def expect_error(directory: Path, filename: str, where: str, *problem: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(directory)
    error = caught.value
    assert Path(error.file) == directory / filename
    assert error.path == where
    for fragment in problem:
        assert fragment in error.problem
    message = str(error)
    assert filename in message
    assert (where or "<document>") in message
    return error
