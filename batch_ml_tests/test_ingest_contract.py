"""The landing contract: valid files load typed; bad files fail naming file, row and column."""

import datetime as dt
import json

import polars as pl
import pytest

from batch_ml.config import FeatureConfig
from batch_ml.ingest.contract import ContractViolation, read_landing_file, sources
from batch_ml.ingest.landing import discover

DAY = dt.date(2025, 3, 1)
SRC = sources(
    FeatureConfig(known_in_advance=("price", "on_promo"), product_attributes=("category",))
)
HEADER = "date,store_id,item_id,units,price,on_promo\n"


def _sales(tmp_path, body: str | bytes, name: str = "sales_2025-03-01.csv"):
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


def test_valid_sales_file_loads_with_contract_types(tmp_path):
    path = _sales(tmp_path, HEADER + "2025-03-01,S1,I1,3,2.5,0\n2025-03-01,S1,I2,0,1.0,1\n")
    frame = read_landing_file(path, SRC["sales"], DAY)
    assert frame.schema["date"] == pl.Date and frame.schema["units"] == pl.Float64
    assert frame.height == 2 and frame["units"].to_list() == [3.0, 0.0]


def test_header_only_file_is_an_empty_day_and_bom_is_accepted(tmp_path):
    assert read_landing_file(_sales(tmp_path, HEADER), SRC["sales"], DAY).height == 0
    bom = _sales(tmp_path, "\ufeff" + HEADER + "2025-03-01,S1,I1,3,2.5,0\n")
    assert read_landing_file(bom, SRC["sales"], DAY).height == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("date,store_id,item_id\n2025-03-01,S1,I1\n", "missing required column(s) ['units']"),
        (
            HEADER.strip() + ",colour\n2025-03-01,S1,I1,3,2.5,0,red\n",
            "unexpected column(s) ['colour']",
        ),
        (
            HEADER + "2025-03-01,S1,I1,three,2.5,0\n",
            "row 1, column 'units': not a valid value ('three')",
        ),
        (HEADER + "2025-03-01,S1,I1,3,2.5,0\n2025-03-01,S1,I1,4,2.5,0\n", "duplicate key"),
        (
            HEADER + "2025-03-01,S1,I1,-3,2.5,0\n",
            "row 1, column 'units': below the minimum ('-3.0'); expected >= 0",
        ),
        (
            HEADER + "2025-03-01,S1,I1,NaN,2.5,0\n",
            "row 1, column 'units': not a finite number ('NaN')",
        ),
        (
            HEADER + "2025-03-01,S1,,3,2.5,0\n",
            "row 1, column 'item_id': missing value; expected a value",
        ),
        (
            HEADER + "2025-03-01,S1,I1,3,2.5,0\n2025-03-02,S1,I2,3,2.5,0\n",
            "row 2, column 'date': date outside the partition ('2025-03-02'); expected 2025-03-01",
        ),
        (
            HEADER + "2025-13-01,S1,I1,3,2.5,0\n",
            "row 1, column 'date': not a valid value ('2025-13-01'); expected a date as YYYY-MM-DD",
        ),
        (b"date,store_id,item_id,units\n2025-03-01,S\xff1,I1,3\n", "line 2: not valid UTF-8"),
    ],
)
def test_bad_sales_files_fail_with_file_row_and_column(tmp_path, body, expected):
    path = _sales(tmp_path, body)
    with pytest.raises(ContractViolation) as err:
        read_landing_file(path, SRC["sales"], DAY)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_bad_file_names_are_reported_by_discovery_and_partial_files_ignored(tmp_path):
    folder = tmp_path / "sales"
    folder.mkdir()
    for name in [
        "sales_2025-03-01.csv",
        "sales_2025-03-02.csv.tmp",
        ".sales_x.csv",
        "sales_2025-02-30.csv",
        "sales_2025-03-03.txt",
        "sales_;rm -rf.csv",
    ]:
        (folder / name).write_text(HEADER)
    files, problems = discover(tmp_path, SRC["sales"])
    assert [f.partition for f in files] == [DAY]
    assert len(problems) == 3 and any("2025-02-30" in p for p in problems)


def test_plans_must_target_the_days_after_their_publication(tmp_path):
    path = tmp_path / "plans_2025-03-01.parquet"
    pl.DataFrame(
        {"date": [DAY], "store_id": ["S1"], "item_id": ["I1"], "price": [1.0]}
    ).write_parquet(path)
    with pytest.raises(ContractViolation, match="between 2025-03-02 and 2025-03-15"):
        read_landing_file(path, SRC["plans"], DAY, horizon=14)


def test_json_with_the_wrong_shape_is_rejected(tmp_path):
    path = tmp_path / "products.json"
    path.write_text(json.dumps({"item_id": "I1"}))
    with pytest.raises(ContractViolation, match="expected a JSON array of objects"):
        read_landing_file(path, SRC["products"])
