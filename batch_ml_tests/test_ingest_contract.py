"""The landing contract: valid files load typed; bad files fail naming file, row and column."""

import datetime as dt
import json
import time

import dagster as dg
import polars as pl
import pytest

from batch_ml.config import ConfigError, IngestLimits, load_config
from batch_ml.definitions import build_definitions
from batch_ml.harness.project import write_config
from batch_ml.platform.resources import TableStore
from batch_ml.platform.sources.contract import ContractViolation, read_landing_file
from batch_ml.platform.sources.landing import discover
from batch_ml.platform.sources.records import LOG_TABLE
from batch_ml.platform.storage.tables import UNPARTITIONED, PartitionedTable
from batch_ml.products.forecasting.config import FeatureConfig, settings
from batch_ml.products.forecasting.features import BASELINE_COLUMNS
from batch_ml.products.forecasting.product import PRODUCT
from batch_ml.products.forecasting.sources import project_sources, sources

DAY = dt.date(2025, 3, 1)
HORIZON = 14
SRC = sources(
    FeatureConfig(known_in_advance=("price", "on_promo"), product_attributes=("category",)),
    IngestLimits(),
    HORIZON,
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
        read_landing_file(path, SRC["plans"], DAY)


def test_json_with_the_wrong_shape_is_rejected(tmp_path):
    path = tmp_path / "products.json"
    path.write_text(json.dumps({"item_id": "I1"}))
    with pytest.raises(ContractViolation, match="expected a JSON array of objects"):
        read_landing_file(path, SRC["products"])


# ---------------------------------------------------------------------------------------------
# Files the contract allows are stored: every partition of a source has the same schema
# ---------------------------------------------------------------------------------------------

FULL = sources(
    FeatureConfig(
        known_in_advance=("price", "on_promo", "is_open"),
        calendar=("is_holiday",),
        product_attributes=("category", "base_price"),
        store_attributes=("region", "store_size"),
        numeric_attributes=("base_price", "store_size"),
    ),
    IngestLimits(),
    HORIZON,
)


def _parquet(path, frame: dict) -> None:
    pl.DataFrame(frame).write_parquet(path)


def test_files_the_contract_allows_are_stored_after_a_full_file(tmp_path):
    tables, landing = tmp_path / "tables", tmp_path / "landing"
    landing.mkdir()

    def store(table: str, key: str, name: str, content: bytes | dict, day=None) -> pl.DataFrame:
        path = landing / name
        if isinstance(content, dict):
            _parquet(path, content)
        else:
            path.write_bytes(content)
        rows = read_landing_file(path, FULL[table], day)
        PartitionedTable(tables, table).write(key, rows)  # raises SchemaChangeError on a change
        return PartitionedTable(tables, table).read([key])

    day2 = DAY + dt.timedelta(days=1)
    full = HEADER.strip() + ",is_open\n2025-03-01,S1,I1,3,2.5,0,1\n"
    store("sales", "2025-03-01", "sales_2025-03-01.csv", full.encode(), DAY)
    only_required = b"date,store_id,item_id,units\n2025-03-02,S1,I1,4\n"
    sales = store("sales", "2025-03-02", "sales_2025-03-02.csv", only_required, day2)
    assert sales.rows() == [(day2, "S1", "I1", 4.0, None, None, None)]
    assert PartitionedTable(tables, "sales").schema() == pl.Schema(FULL["sales"].columns)

    target = [DAY + dt.timedelta(days=1)]
    plan = {"date": target, "store_id": ["S1"], "item_id": ["I1"], "price": [2.5]}
    store("plans", "2025-03-01", "plans_2025-03-01.parquet", plan, DAY)
    whole = {**plan, "date": [day2 + dt.timedelta(days=1)], "price": [3], "is_open": [True]}
    plans = store("plans", "2025-03-02", "plans_2025-03-02.parquet", whole, day2)
    assert plans.select("price", "on_promo", "is_open").rows() == [(3.0, None, 1.0)]

    first = [{"item_id": "I1", "category": "snacks", "base_price": 2.5}]
    store("products", "all", "products.json", json.dumps(first).encode())
    whole_and_absent = [{"item_id": "I1", "base_price": 3}, {"item_id": "I2"}]
    products = store("products", "all", "products.json", json.dumps(whole_and_absent).encode())
    assert products.select("item_id", "category", "base_price").rows() == [
        ("I1", None, 3.0),
        ("I2", None, None),
    ]
    store("stores", "all", "stores.json", json.dumps([{"store_id": "S1"}]).encode())
    numeric = [{"store_id": "S1", "region": "north", "store_size": 3}]
    stores = store("stores", "all", "stores.json", json.dumps(numeric).encode())
    assert stores.schema == pl.Schema(
        {"store_id": pl.String, "region": pl.String, "store_size": pl.Float64}
    )


def test_attribute_types_and_limits_come_from_the_config(tmp_path):
    path = write_config(tmp_path)
    cfg = load_config(path)
    assert settings(cfg).features.numeric_attributes == ("base_price",)
    assert cfg.ingest.limits == IngestLimits()
    contract = project_sources(cfg)
    assert contract["products"].columns["base_price"] == pl.Float64
    assert contract["products"].columns["category"] == pl.String
    assert contract["stores"].columns["store_size"] == pl.String

    base = path.read_text()
    path.write_text(base + "\n[ingest]\nmax_columns = 20\nmax_rows = 5e6\nmax_abs_value = 1e9\n")
    limits = load_config(path).ingest.limits
    assert (limits.max_columns, limits.max_rows, limits.max_abs_value) == (20, 5_000_000, 1e9)
    assert isinstance(limits.max_rows, int)
    for bad, message in [
        ("max_rows = 0", "ingest.max_rows: expected a positive finite number"),
        ("max_columns = 2.5", "ingest.max_columns: expected a whole number"),
        ('max_abs_value = "big"', "ingest.max_abs_value: expected a number"),
        ("max_abs_value = inf", "ingest.max_abs_value: expected a positive finite number"),
    ]:
        path.write_text(f"{base}\n[ingest]\n{bad}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(path)
    undeclared = write_config(tmp_path, products=("category",), numeric=())
    undeclared.write_text(
        undeclared.read_text().replace("numeric_attributes = []", 'numeric_attributes = ["size"]')
    )
    with pytest.raises(ConfigError, match=r"numeric_attributes \['size'\] are not product"):
        load_config(undeclared)


# ---------------------------------------------------------------------------------------------
# Limits: linear header checks, and sizes the benchmark delivers pass
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([f"c{i}" for i in range(50_000)], "and 49,990 more"),
        (["date", "store_id", "item_id", "units", *["units"] * 50_000], "duplicated column"),
        (["date", "store_id", "item_id", "units", *[f"x{i}" for i in range(50_000)]], "x9'"),
    ],
)
def test_a_header_of_50000_columns_is_checked_within_a_second(tmp_path, names, expected):
    wide = sources(FeatureConfig(), IngestLimits(max_columns=100_000, max_line_bytes=10**7), 14)
    path = _sales(tmp_path, ",".join(names) + "\n" + ",".join(["1"] * len(names)) + "\n")
    start = time.perf_counter()
    with pytest.raises(ContractViolation) as err:
        read_landing_file(path, wide["sales"], DAY)
    assert time.perf_counter() - start < 1.0
    assert expected in str(err.value) and len(str(err.value)) < 2_000
    with pytest.raises(ContractViolation, match="at most 1,000 allowed"):
        read_landing_file(path, SRC["sales"], DAY)  # the default limit


def test_the_benchmark_sizes_pass_the_default_limits(tmp_path):
    """A 30k-series day: 30,000 sales rows, and a plan of 420,000 rows (14 days ahead)."""
    series = pl.DataFrame({"store_id": [f"S{i // 1000:02d}" for i in range(30_000)]}).with_columns(
        item_id=pl.format("I{}", pl.int_range(30_000))
    )
    sales = series.select(pl.lit(DAY).alias("date"), "store_id", "item_id", units=pl.lit(2.0))
    path = tmp_path / "sales_2025-03-01.csv"
    sales.write_csv(path)
    assert read_landing_file(path, FULL["sales"], DAY).height == 30_000
    days = pl.DataFrame({"date": [DAY + dt.timedelta(days=k) for k in range(1, 15)]})
    plan = days.join(series, how="cross").with_columns(price=pl.lit(1.5), is_open=pl.lit(1))
    path = tmp_path / "plans_2025-03-01.parquet"
    plan.write_parquet(path)
    assert read_landing_file(path, FULL["plans"], DAY).height == 420_000


# ---------------------------------------------------------------------------------------------
# Identity: ids of plans, products and stores must name series the stored sales know
# ---------------------------------------------------------------------------------------------


def _log(cfg) -> pl.DataFrame:
    return PartitionedTable(cfg.paths.tables, LOG_TABLE).read()


@pytest.mark.definitions
def test_files_whose_ids_match_no_known_series_fail_with_a_log_row(small_project):
    cfg = small_project
    defs = build_definitions(cfg)
    sales, plans, products = (defs.resolve_assets_def(n) for n in ("sales", "plans", "products"))
    key = DAY.isoformat()
    plan_file = cfg.paths.landing / "plans" / f"plans_{key}.parquet"
    unknown = pl.read_parquet(plan_file).with_columns(  # S01, I001 -> 1, 1
        pl.col("store_id").str.strip_chars_start("S0"),
        pl.col("item_id").str.strip_chars_start("I0"),
    )
    unknown.write_parquet(plan_file)
    with dg.DagsterInstance.ephemeral() as instance:
        # No sales stored yet: nothing to compare with, the plan is stored.
        assert dg.materialize([plans], partition_key=key, instance=instance).success
        assert dg.materialize([sales], partition_key=key, instance=instance).success
        result = dg.materialize([plans], partition_key=key, instance=instance, raise_on_error=False)
        assert not result.success
        (failure,) = result.get_step_failure_events()
        message = failure.step_failure_data.error.message
        assert str(plan_file) in message
        assert "none of the 12 distinct (store_id, item_id) of the file matches" in message
        assert (
            "the file has e.g. ('1', '1'), ('1', '2'), ('1', '3'), sales have e.g. ('S01', 'I001')"
            in message
        )
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)

        catalogue = cfg.paths.landing / "products" / "products.json"
        catalogue.write_text(json.dumps([{"item_id": "i001", "category": "snacks"}]))
        result = dg.materialize([products], instance=instance, raise_on_error=False)
        assert not result.success
    failed = _log(cfg).filter(pl.col("status") == "failed").sort("source")
    assert failed["source"].to_list() == ["plans", "products"]
    assert failed["error"].str.contains("matches the stored sales").all()


# ---------------------------------------------------------------------------------------------
# Features and metrics never store non-finite values
# ---------------------------------------------------------------------------------------------


def _check(result: dg.ExecuteInProcessResult, name: str):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


STATIC, FEATURES = ("calendar", "products", "stores"), "demand_features"


@pytest.mark.definitions
def test_demand_features_fail_rather_than_store_infinite_values(small_project):
    """A sales partition holding an infinite value (stored before ingestion checked it, or by
    another writer): the features' partition fails, its check says why, nothing is stored."""
    cfg = small_project
    defs = build_definitions(cfg)
    key = DAY.isoformat()
    with dg.DagsterInstance.ephemeral() as instance:
        defs.resolve_job_def(PRODUCT.reference_data_job).execute_in_process(instance=instance)
        sales = PartitionedTable(cfg.paths.tables, "sales")
        job = defs.resolve_job_def(PRODUCT.daily_job)
        ingest = [dg.AssetKey(a) for a in ("sales", "plans", FEATURES)]
        assert job.execute_in_process(
            instance=instance, partition_key=key, asset_selection=ingest
        ).success
        sales.write(key, sales.read([key]).with_columns(units=pl.lit(float("inf"))))
        graph = [defs.resolve_assets_def(n) for n in (*STATIC, "sales", "plans", FEATURES)]
        stored = cfg.paths.tables / FEATURES / f"{key}.parquet"
        stored.unlink()
        result = dg.materialize(
            graph, selection=[FEATURES], partition_key=key, instance=instance, raise_on_error=False
        )
        assert not result.success
        (failure,) = result.get_step_failure_events()
        assert "NaN or infinite value(s) would be stored, by column: {" in (
            failure.step_failure_data.error.message
        )
        assert "'roll_mean_7': 84" in failure.step_failure_data.error.message  # 12 series x 7 leads
        check = _check(result, "finite_values")
        assert not check.passed and check.metadata["column_roll_mean_7"].value == 84
        assert not stored.exists()
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)

        result = job.execute_in_process(
            instance=instance, partition_key=key, asset_selection=ingest
        )
        assert result.success and _check(result, "finite_values").passed
        assert stored.exists()


@pytest.mark.definitions
def test_forecast_accuracy_fails_rather_than_store_infinite_metrics(small_project):
    """Actuals of 1e308 (stored before ingestion bounded magnitudes) square to inf."""
    cfg = small_project
    target, origin = dt.date(2025, 3, 20), dt.date(2025, 3, 19)
    store = TableStore(tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse))
    series = {"store_id": ["S01"], "item_id": ["I001"]}
    keys = {"forecast_date": [origin], "target_date": [target], **series}
    forecast = pl.DataFrame({**keys, "lead": [1], "prediction": [2.0], "model_version": ["m"]})
    store.write("predictions", {origin.isoformat(): forecast})
    baselines = {c: [1.0] for c in BASELINE_COLUMNS.values()}
    store.write("demand_features", {origin.isoformat(): pl.DataFrame({**keys, **baselines})})
    actuals = pl.DataFrame({"date": [target], **series, "units": [1e308]})
    store.write("sales", {target.isoformat(): actuals})
    store.write("products", {UNPARTITIONED: pl.DataFrame({"item_id": ["I001"], "category": ["x"]})})
    job = build_definitions(cfg).resolve_job_def(PRODUCT.daily_job)
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            instance=instance,
            partition_key=target.isoformat(),
            raise_on_error=False,
            asset_selection=[dg.AssetKey("forecast_accuracy")],
        )
    assert not result.success
    check = _check(result, "finite_values")
    assert not check.passed and check.metadata["column_sum_sq_error"].value == 3  # 3 methods
    assert not (cfg.paths.tables / "forecast_accuracy").exists()
