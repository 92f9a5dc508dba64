"""Record keys: a composite key's parts joined into one text and split back, whatever the parts hold."""

from __future__ import annotations

import pandas as pd
import pytest

from truesync.config import EntityMapping
from truesync.core import keys

PARTS = [
    (["O-1", "2"], "O-1|2"),
    (["A|7", "1"], "A\\|7|1"),
    (["back\\slash", "3"], "back\\\\slash|3"),
    (["", "4"], "|4"),
    (["trailing\\", "|"], "trailing\\\\|\\|"),
    (["x", "y", "z"], "x|y|z"),
]


@pytest.mark.parametrize(("parts", "key"), PARTS)
def test_parts_join_into_one_key_and_split_back(parts: list[str], key: str) -> None:
    joined = keys.join([pd.Series([p], dtype=object) for p in parts])
    assert joined.tolist() == [key]
    assert keys.split(key, len(parts)) == parts


def test_a_row_with_a_null_part_has_no_key() -> None:
    joined = keys.join([pd.Series(["O1", None, "O3"], dtype=object), pd.Series(["1", "2", None], dtype=object)])
    assert joined.tolist() == ["O1|1", None, None]


def test_a_single_field_key_is_its_text_unchanged() -> None:
    single = pd.Series(["a|b", None], dtype=object)
    assert keys.join([single]) is single
    assert keys.split("a|b", 1) == ["a|b"]


def test_a_key_of_another_number_of_parts_does_not_split() -> None:
    with pytest.raises(ValueError, match=r"record key 'O1\|2\|3' has 3 part\(s\), not 2"):
        keys.split("O1|2|3", 2)
    with pytest.raises(ValueError, match="has 1 part"):
        keys.split("A\\|7", 2)


def test_split_all_and_system_keys_name_rows_by_their_key_columns() -> None:
    assert keys.split_all(["O1|1", "A\\|7|2"], ["order_id", "line_no"]) == {
        "order_id": ["O1", "A|7"],
        "line_no": ["1", "2"],
    }
    mapping = EntityMapping(table="lines", key=["ref", "line"], fields={"order_id": "ref", "line_no": "line"})
    rows = [{"ref": "O1", "line": 1, "qty": 2}, {"ref": "A|7", "line": 2, "qty": 1}]
    assert keys.system_keys(rows, mapping) == ["O1|1", "A\\|7|2"]
