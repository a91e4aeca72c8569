"""Sources declared as data: JSON lines and XML files, the declaration's own rules, and the
asset the platform builds from a declaration that belongs to no product here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from batch_ml.config import IngestLimits, load_config
from batch_ml.harness.project import write_config
from batch_ml.platform.common import BuildContext
from batch_ml.platform.product import Product
from batch_ml.platform.resources import LandingZone, TableStore
from batch_ml.platform.sources.assets import source_asset
from batch_ml.platform.sources.contract import (
    ContractViolation,
    MatchesStored,
    Source,
    Summary,
    read_landing_file,
)
from batch_ml.platform.storage.tables import UNPARTITIONED, PartitionedTable

DAY = dt.date(2025, 3, 1)
# A product-neutral source: daily orders of customers for SKUs.
ORDERS = Source(
    name="orders",
    file_format="csv",
    required={"day": pl.Date(), "customer": pl.String(), "sku": pl.String(), "qty": pl.Float64()},
    optional={"note": pl.String()},
    primary_key=("day", "customer", "sku"),
    id_columns=("customer", "sku"),
    non_negative=("qty",),
    date_column="day",
)
CSV = """day,customer,sku,qty,note
2025-03-01,C1,A,2,
2025-03-01,C1,B,0.5,gift & wrap
2025-03-01,C2,A,3,<b>
"""
JSONL = """{"day": "2025-03-01", "customer": "C1", "sku": "A", "qty": 2}
{"day": "2025-03-01", "customer": "C1", "sku": "B", "qty": 0.5, "note": "gift & wrap"}
{"day": "2025-03-01", "customer": "C2", "sku": "A", "qty": 3, "note": "<b>"}
"""
XML = """<?xml version="1.0" encoding="UTF-8"?>
<orders xmlns="urn:example">
  <record><day>2025-03-01</day><customer>C1</customer><sku>A</sku><qty>2</qty><note/></record>
  <record>
    <day>2025-03-01</day><customer>C1</customer><sku>B</sku><qty>0.5</qty>
    <note>gift &amp; wrap</note>
  </record>
  <record><day>2025-03-01</day><customer>C2</customer><sku>A</sku><qty> 3 </qty>
    <note><![CDATA[<b>]]></note></record>
</orders>
"""


def _file(tmp_path, source: Source, text: str | bytes, day: dt.date | None = DAY):
    path = tmp_path / source.file_name(day if source.daily else None)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _as(file_format: str, **changes) -> Source:
    return dataclasses.replace(ORDERS, file_format=file_format, **changes)


def _violation(path, source: Source, day: dt.date | None = DAY) -> str:
    with pytest.raises(ContractViolation) as err:
        read_landing_file(path, source, day)
    message = str(err.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize(("file_format", "text"), [("jsonl", JSONL), ("xml", XML)])
def test_jsonl_and_xml_files_load_exactly_as_their_csv_equivalent(tmp_path, file_format, text):
    expected = read_landing_file(_file(tmp_path, ORDERS, CSV), ORDERS, DAY)
    source = _as(file_format)
    rows = read_landing_file(_file(tmp_path, source, text), source, DAY)
    assert_frame_equal(rows, expected)
    assert rows.schema["day"] == pl.Date and rows["note"].to_list() == [None, "gift & wrap", "<b>"]


def test_a_jsonl_file_may_end_without_a_newline_and_with_crlf_lines(tmp_path):
    source = _as("jsonl")
    text = JSONL.replace("\n", "\r\n").rstrip()
    assert read_landing_file(_file(tmp_path, source, text), source, DAY).height == 3


@pytest.mark.parametrize(
    ("file_format", "text", "expected"),
    [
        ("jsonl", JSONL.replace('"qty": 0.5', '"qty": "0.5"'), "a JSON number"),
        ("jsonl", JSONL.replace('"customer": "C1", "sku": "B"', '"customer": 7, "sku": "B"'),
         'ids are text: write 1 as "1"'),
        ("xml", XML.replace("<qty>0.5</qty>", "<qty>half</qty>"), "a Float64"),
        ("xml", XML.replace("<day>2025-03-01</day><customer>C1</customer><sku>B",
                            "<day>2025-03-02</day><customer>C1</customer><sku>B"),
         "2025-03-01 (the file's partition)"),
    ],
)  # fmt: skip
def test_a_bad_value_is_named_by_row_and_column(tmp_path, file_format, text, expected):
    source = _as(file_format)
    message = _violation(_file(tmp_path, source, text), source)
    column = "day" if "partition" in expected else "customer" if "ids" in expected else "qty"
    assert f"row 2, column '{column}'" in message and expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (XML.replace("<customer>C2</customer>", "<customer>C2</customr>"),
         "line 8, column 46: mismatched tag"),
        (XML.replace("</orders>\n", ""), "line 10, column 1: no element found"),
        (XML.replace("<record>\n", '<record id="2">\n'),
         "line 4: <record> has attribute(s) ['id']"),
        (XML.replace("<note/>", "<note><b>x</b></note>"), "line 3: <b> inside column <note>"),
        (XML.replace("  <record>\n", "  <row>\n", 1).replace("  </record>\n", "  </row>\n", 1),
         "line 4: <row> where a <record> record was expected"),
        (XML.replace("<note/>", "<note/><qty>1</qty>"), "line 3: record 1 has column <qty> twice"),
        (XML.replace("<note/></record>", "<note/>stray</record>"),
         "line 3: text 'stray' in record 1"),
        (XML.replace("<sku>A</sku>", "<sku>A</sku><colour>red</colour>", 1),
         "unexpected column(s) ['colour']"),
        (XML.replace("<day>2025-03-01</day>", "", 1), "row 1, column 'day': missing value"),
        (XML.encode().replace(b"gift", b"gi\xe9t"), "line 6: not valid UTF-8"),
    ],
)  # fmt: skip
def test_a_malformed_xml_file_is_named_with_its_line(tmp_path, text, expected):
    source = _as("xml")
    assert expected in _violation(_file(tmp_path, source, text), source)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (JSONL.replace('"sku": "B",', '"sku": "B"'), "line 2: Expecting ',' delimiter (column 52)"),
        (JSONL.replace("\n", "\n\n", 1), "line 2 is empty; expected one JSON object per line"),
        (JSONL + '["C3"]\n', "line 4: expected one JSON object per line; the line holds an array"),
        ("[" * 40 + "]" * 40, "JSON nested more than 32 levels deep"),
    ],
)  # fmt: skip
def test_a_malformed_jsonl_file_is_named_with_its_line(tmp_path, text, expected):
    source = _as("jsonl")
    assert expected in _violation(_file(tmp_path, source, text), source)


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE orders [\n  <!ENTITY lol0 "lol">\n'
    + "".join(f'  <!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10))
    + "]>\n<orders><record><customer>&lol9;</customer></record></orders>\n"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE orders [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
    "<orders><record><customer>&secret;</customer></record></orders>\n"
)


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["bomb", "external"])
def test_an_xml_entity_bomb_or_external_entity_is_refused_before_any_expansion(tmp_path, text):
    source = _as("xml")
    path = _file(tmp_path, source, text)
    start = time.perf_counter()
    message = _violation(path, source)
    assert time.perf_counter() - start < 1.0
    assert "line 2: a DOCTYPE is not allowed" in message
    assert "root:" not in message and "lol" not in message  # nothing was expanded or read


def test_an_undeclared_entity_is_a_parse_error(tmp_path):
    source = _as("xml")
    path = _file(tmp_path, source, XML.replace("gift &amp; wrap", "gift &nbsp; wrap"))
    assert "line 6, column 16: undefined entity" in _violation(path, source)


@pytest.mark.parametrize("file_format", ["jsonl", "xml"])
def test_row_and_column_limits_stop_jsonl_and_xml_files(tmp_path, file_format):
    text = {"jsonl": JSONL, "xml": XML}[file_format]
    rows = _as(file_format, limits=IngestLimits(max_rows=2))
    assert "([ingest] max_rows)" in _violation(_file(tmp_path, rows, text), rows)
    columns = _as(file_format, limits=IngestLimits(max_columns=4))
    assert "([ingest] max_columns)" in _violation(_file(tmp_path, columns, text), columns)


def test_a_long_jsonl_line_is_refused_by_the_line_limit(tmp_path):
    source = _as("jsonl", limits=IngestLimits(max_line_bytes=120))
    # 113 characters, but 153 bytes in UTF-8: the limit is on bytes.
    text = JSONL.replace('"note": "<b>"', '"note": "' + "é" * 40 + '"')
    message = _violation(_file(tmp_path, source, text), source)
    assert "line 3 is 153 bytes long; at most 120 allowed ([ingest] max_line_bytes)" in message


def test_a_huge_xml_file_stops_at_the_row_limit_without_reading_it_all(tmp_path):
    source = _as("xml", limits=IngestLimits(max_rows=1_000))
    record = (
        "<record><day>2025-03-01</day><customer>C</customer><sku>A</sku><qty>1</qty></record>\n"
    )
    path = _file(tmp_path, source, "<orders>\n" + record * 500_000 + "</orders>\n")
    start = time.perf_counter()
    assert "line 1002: more than 1,000 rows" in _violation(path, source)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------------------------
# The declaration's rules
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offsets", "dates", "expected"),
    [
        ((1, 3), [DAY], "between 2025-03-02 and 2025-03-04 (orders published on 2025-03-01)"),
        ((1, 3), [DAY + dt.timedelta(days=4)], "between 2025-03-02 and 2025-03-04"),
        ((1, None), [DAY], "on or after 2025-03-02 (orders published on 2025-03-01)"),
    ],
)
def test_the_dates_a_file_may_hold_are_the_declared_offsets_from_its_day(
    tmp_path, offsets, dates, expected
):
    source = _as("csv", date_offsets=offsets, day_column="published")
    lines = "".join(f"{d},C1,A,1,\n" for d in dates)
    message = _violation(_file(tmp_path, source, CSV.splitlines()[0] + "\n" + lines), source)
    assert (
        f"row 1, column 'day': date outside the partition ('{dates[0]}'); expected {expected}"
        in message
    )
    later = DAY + dt.timedelta(days=400)
    ok = _file(tmp_path, source, CSV.splitlines()[0] + f"\n{DAY + dt.timedelta(days=2)},C1,A,1,\n")
    assert read_landing_file(ok, source, DAY).height == 1
    if offsets[1] is None:  # no upper bound
        far = _file(tmp_path, source, CSV.splitlines()[0] + f"\n{later},C1,A,1,\n")
        assert read_landing_file(far, source, DAY).height == 1


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"file_format": "xlsx"}, "file_format 'xlsx' not in"),
        ({"name": "Orders/x"}, "name must be lower-case snake_case"),
        ({"date_column": None}, "a daily source needs a required pl.Date or pl.Datetime"),
        ({"file_format": ("csv", "xml", "csv")}, "file_format names ['csv'] twice"),
        ({"file_format": ("csv", "xlsx")}, "file_format ('csv', 'xlsx') not in"),
        ({"optional": {"n": pl.Int32()}}, "column type(s) not supported: {'n': Int32}"),
        ({"optional": {"at": pl.Datetime("us")}}, 'declare [\'at\'] as pl.Datetime("us", "UTC")'),
        ({"date_offsets": (1, 3)}, "rows dated other than their file's day need a day_column"),
        ({"date_offsets": (3, 1), "day_column": "d"}, "the last is before the first"),
        ({"id_columns": ("qty",)}, "id_columns must be text (pl.String): ['qty']"),
        ({"allowed": {"qty": ("1", "2")}}, "allowed must be text (pl.String): ['qty']"),
        ({"unique_across_days": True, "primary_key": ()}, "unique_across_days needs a daily"),
        ({"allowed": {"colour": ("red",)}}, "allowed names unknown column(s) ['colour']"),
        ({"primary_key": ("order_id",)}, "primary_key names unknown column(s) ['order_id']"),
        ({"day_column": "note"}, "day_column 'note' is also a file column"),
        ({"daily": False, "day_column": "d"}, "a static source has no day"),
        ({"known_ids": MatchesStored("other", ("shop",))}, "known_ids names unknown column(s)"),
        ({"summaries": (Summary("n", "distinct", ("shop",)),)}, "summary n names unknown column"),
    ],
)
def test_a_declaration_that_cannot_work_is_refused_when_made(changes, expected):
    with pytest.raises(ValueError, match="source '") as err:
        dataclasses.replace(ORDERS, **changes)
    assert expected in str(err.value)


def test_the_file_name_pattern_comes_from_the_name_and_format():
    source = _as("jsonl")
    assert source.partition_of("orders_2025-03-01.jsonl") == DAY
    with pytest.raises(ContractViolation, match="does not match"):
        source.partition_of("orders_2025-03-01.json")
    static = dataclasses.replace(source, daily=False)
    assert static.file_name() == "orders.jsonl" and static.partition_of("orders.jsonl") is None


# ---------------------------------------------------------------------------------------------
# The platform builds a declared source's asset: no product code involved
# ---------------------------------------------------------------------------------------------

DECLARED = {
    "orders": _as(
        "xml",
        summaries=(
            Summary("customers", "distinct", ("customer",)),
            Summary("qty_total", "sum", ("qty",)),
        ),
        description="Daily orders (XML).",
    ),
    # Published each day for the next two days; a day may have none.
    "offers": Source(
        name="offers",
        file_format="jsonl",
        required={"day": pl.Date(), "sku": pl.String(), "discount": pl.Float64()},
        primary_key=("day", "sku"),
        id_columns=("sku",),
        date_column="day",
        date_offsets=(1, 2),
        day_column="offered_on",
        file_required=False,
        known_ids=MatchesStored("orders", ("sku",)),
    ),
    "customers": Source(
        name="customers",
        file_format="jsonl",
        required={"customer": pl.String()},
        optional={"segment": pl.String()},
        primary_key=("customer",),
        id_columns=("customer",),
        daily=False,
        file_required=False,
        known_ids=MatchesStored("orders", ("customer",)),
    ),
}


# A product that declares only these sources (its assets are built below, one by one).
DECLARING = Product(
    name="declared",
    description="sources declared in this test",
    owners=(),
    sources=lambda cfg: DECLARED,
    first_week=lambda cfg: cfg.start_date,
    assets=lambda b: [],
    reference=("customers",),
    daily=("orders",),
)


@pytest.fixture
def declared(tmp_path):
    cfg = load_config(write_config(tmp_path))
    b = BuildContext.from_config(cfg, DECLARING)
    assets = {name: source_asset(source, b) for name, source in DECLARED.items()}
    landing = cfg.paths.landing
    resources = {
        "landing": LandingZone(root=str(landing)),
        "tables": TableStore(
            tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse)
        ),
    }
    for name in DECLARED:
        (landing / name).mkdir(parents=True)
    with dg.DagsterInstance.ephemeral() as instance:

        def run(name: str, key: str | None = None) -> dg.ExecuteInJobResult:
            return dg.materialize(
                [assets[name]],
                partition_key=key,
                resources=resources,
                instance=instance,
                raise_on_error=False,
            )

        yield cfg, run


def _metadata(result, name: str) -> dict:
    (event,) = result.asset_materializations_for_node(name)
    return {k: v.value for k, v in event.metadata.items()}


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_a_declared_daily_source_is_stored_with_its_checks_and_summaries(declared):
    cfg, run = declared
    key = DAY.isoformat()
    assert not run("orders", key).success  # its file is required
    (cfg.paths.landing / "orders" / f"orders_{key}.xml").write_text(XML)
    result = run("orders", key)
    assert result.success
    meta = _metadata(result, "orders")
    assert (meta["customers"], meta["qty_total"], meta["dagster/row_count"]) == (2, 5.5, 3)
    assert meta["rows_quarantined"] == 0 and "duration_s" in meta
    assert _checks(result) == {
        "unique_keys": True,
        "rows_every_day": True,
        "no_quarantined_rows": True,
    }
    stored = PartitionedTable(cfg.paths.tables, "orders").read([key])
    assert stored.columns == ["day", "customer", "sku", "qty", "note"] and stored.height == 3


def test_an_optional_daily_file_stores_an_empty_day_and_its_day_column(declared):
    cfg, run = declared
    key = DAY.isoformat()
    (cfg.paths.landing / "orders" / f"orders_{key}.xml").write_text(XML)
    assert run("orders", key).success
    result = run("offers", key)  # no file: an empty partition
    assert result.success and _metadata(result, "offers")["days_without_file"] == 1
    offers = cfg.paths.landing / "offers" / f"offers_{key}.jsonl"
    lines = [{"day": f"2025-03-0{d}", "sku": s, "discount": 0.1} for d in (2, 3) for s in "AB"]
    offers.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = run("offers", key)
    assert result.success and _checks(result)["unique_keys"]
    stored = PartitionedTable(cfg.paths.tables, "offers").read([key])
    assert stored.columns == ["day", "sku", "discount", "offered_on"]
    assert stored["offered_on"].unique().to_list() == [DAY] and stored.height == 4


def test_ids_that_match_none_of_the_stored_source_fail_the_file(declared):
    cfg, run = declared
    (cfg.paths.landing / "orders" / f"orders_{DAY}.xml").write_text(XML)
    assert run("orders", DAY.isoformat()).success
    customers = cfg.paths.landing / "customers" / "customers.jsonl"
    customers.write_text('{"customer": "c1"}\n{"customer": "c2"}\n')
    result = run("customers")
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "none of the 2 distinct (customer) of the file matches the stored orders" in message
    customers.write_text('{"customer": "C1", "segment": "retail"}\n{"customer": "new"}\n')
    result = run("customers")
    assert result.success and _metadata(result, "customers")["file_present"]
    assert PartitionedTable(cfg.paths.tables, "customers").read([UNPARTITIONED]).height == 2
