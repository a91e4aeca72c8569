"""The configured data root and column names: `..` resolved and logged, names that would
collide with the contract's columns or with each other refused, unknown keys refused."""

import logging

import pytest

from batch_ml.config import DATA_ROOT_ENV, ConfigError, load_config, parse_config
from batch_ml.harness.project import REPO, write_config
from batch_ml.products.forecasting.config import settings

BASE = {"calendar": {"start_date": "2025-01-01"}}


def test_a_root_with_dot_dot_is_resolved_and_logged(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    (tmp_path / "project").mkdir()
    with caplog.at_level(logging.WARNING, logger="batch_ml.config"):
        cfg = parse_config({**BASE, "data": {"root": "../shared/./data"}}, tmp_path / "project")
    assert cfg.paths.root == tmp_path / "shared" / "data"
    assert cfg.paths.warehouse == tmp_path / "shared" / "data" / "warehouse.duckdb"
    (warning,) = [r for r in caplog.records if r.name == "batch_ml.config"]
    assert "'../shared/./data'" in warning.getMessage()
    assert str(tmp_path / "shared" / "data") in warning.getMessage()

    # The same for an absolute root and for the environment override, which names itself.
    caplog.clear()
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "a" / ".." / "b"))
    with caplog.at_level(logging.WARNING, logger="batch_ml.config"):
        cfg = parse_config(BASE, tmp_path / "project")
    assert cfg.paths.root == tmp_path / "b"
    assert DATA_ROOT_ENV in caplog.records[0].getMessage()


def test_a_plain_root_is_not_logged_and_a_backslash_is_refused(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="batch_ml.config"):
        cfg = load_config(write_config(tmp_path))
    assert cfg.paths.root == tmp_path / "data"
    assert not [r for r in caplog.records if r.name == "batch_ml.config"]
    with pytest.raises(ConfigError, match=r"data\.root: .*contains a backslash"):
        parse_config({**BASE, "data": {"root": "da\\ta"}}, tmp_path)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"calendar": ("units",)}, "features.calendar: column 'units' is a column of the data"),
        ({"stores": ("store_id",)}, "features.store_attributes: column 'store_id'"),
        ({"known": ("plan_date",)}, "features.known_in_advance: column 'plan_date'"),
        ({"products": ("date",)}, "features.product_attributes: column 'date'"),
        ({"calendar": ("price",)}, "features.calendar: column 'price' is a column of the data"),
        ({"products": ("lead",)}, "features.product_attributes: column 'lead'"),
        (
            {"calendar": ("is_holiday",), "stores": ("is_holiday",)},
            "features.store_attributes: column 'is_holiday' is also in "
            "forecasting.features.calendar",
        ),
        ({"known": ("is_open", "is_open")}, "features.known_in_advance: column 'is_open' is twice"),
    ],
)
def test_column_names_that_collide_are_refused(tmp_path, columns, message):
    declared = {"known": (), "calendar": (), "products": (), "stores": (), **columns}
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path, **declared))
    assert message in str(raised.value)


def test_known_in_advance_may_name_the_covariates_sales_files_carry(tmp_path):
    # Sales files carry the observed price and promotion: the plans' known-in-advance columns.
    cfg = load_config(write_config(tmp_path, known=("price", "on_promo", "is_open")))
    assert settings(cfg).features.known_in_advance == ("price", "on_promo", "is_open")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "[forecasting]\nhorizn = 3\n",
            r"unknown key\(s\) \['forecasting.horizn'\]; \[forecasting\] knows",
        ),
        ("[forecast]\nhorizon = 3\n", r"unknown table \[forecast\]; it moved to \[forecasting\]"),
        ("[forecasting.model]\nnum_leafs = 8\n", r"'forecasting.model.num_leafs'"),
        ("[ingest]\nquarantine_rules = []\n", r"'ingest.quarantine_rules'"),
        ("[promotions]\nmargin = 0.1\n", r"unknown table \[promotions\]"),
    ],
)
def test_a_key_or_table_the_config_does_not_know_is_refused(tmp_path, extra, message):
    """A typo must not silently run with the default the user meant to change."""
    path = write_config(tmp_path)
    text = path.read_text()
    section = extra.split("\n", 1)[0]
    if section in text:  # add the key to the existing table
        text = text.replace(section + "\n", extra, 1)
    else:
        text += "\n" + extra
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_the_shipped_config_uses_only_known_keys():
    load_config(REPO / "batch_ml.toml")


def test_a_product_is_switched_off_in_its_table_and_its_hyperparameters_are_config(tmp_path):
    path = write_config(tmp_path)
    text = path.read_text()
    tuned = text + "\n[forecasting.model]\nnum_leaves = 15\nlearning_rate = 0.05\n"
    path.write_text(tuned)
    model = load_config(path).product("forecasting").model
    assert (model.num_leaves, model.learning_rate, model.min_data_in_leaf) == (15, 0.05, 40)
    assert model.lightgbm_params["num_leaves"] == 15 and "max_rounds" not in model.lightgbm_params

    path.write_text(text.replace("[forecasting]\n", "[forecasting]\nenabled = false\n", 1))
    cfg = load_config(path)
    assert cfg.products == {}
    with pytest.raises(ConfigError, match="product 'forecasting' is not enabled"):
        cfg.product("forecasting")
