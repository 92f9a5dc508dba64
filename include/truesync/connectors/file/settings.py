"""The ``file:`` block of a system of kind ``file`` in ``systems.yaml``, validated by pydantic.

Only what the files look like lives here; where they are (the base URL) and the credentials
come from the Airflow connection. A mapping's ``table`` names one of the datasets.
"""

from __future__ import annotations

import codecs
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from truesync.support.durations import Duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    """One kind of file: which files (a glob under the base URL) and how each is written."""

    glob: str = Field(description="files of the dataset, relative to the base URL, e.g. '*/events-*.csv'")
    format: Literal["csv", "jsonl"] = Field("csv", description="csv (a header row) or jsonl (one object a line)")
    delimiter: str = Field(",", min_length=1, max_length=1, description="csv: the field separator")
    encoding: str = Field("utf-8", description="the files' text encoding")

    @field_validator("glob")
    @classmethod
    def _relative(cls, value: str) -> str:
        if not value.strip() or value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"'{value}' must be a glob relative to the base URL, without '..'")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"'{value}' is not a text encoding Python knows") from None
        return value


class FileConfig(_Strict):
    """The datasets of a file drop, and when a file counts as fully delivered."""

    datasets: dict[str, DatasetConfig] = Field(min_length=1, description="dataset name -> its files")
    partial_suffixes: list[str] = Field(
        default_factory=lambda: [".part", ".tmp"], description="a file named so is still being written: not read"
    )
    settle: Duration = Field(
        timedelta(seconds=2),
        description="a file changed less than this ago is listed again after it; one still growing waits a run",
    )
