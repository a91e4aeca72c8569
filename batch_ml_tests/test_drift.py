"""Population stability against a training profile (pure)."""

import numpy as np
import polars as pl

from batch_ml.platform.monitoring.drift import DRIFT, WATCH, profile, psi_table


def _frame(rng, n, shift=0.0, scale=1.0):
    return pl.DataFrame(
        {
            "price": rng.normal(10 + shift, 2 * scale, n),
            "units": rng.poisson(5 + shift, n).astype(float),
        }
    )


def test_a_sample_of_the_training_distribution_is_stable():
    rng = np.random.default_rng(0)
    reference = profile(_frame(rng, 20_000), ["price", "units"])
    table = psi_table(_frame(rng, 2_000), reference)
    assert table["variable"].to_list() == ["price", "units"]
    assert (table["psi"] < WATCH).all(), table


def test_a_shifted_or_widened_distribution_is_drift():
    rng = np.random.default_rng(1)
    reference = profile(_frame(rng, 20_000), ["price", "units"])
    shifted = psi_table(_frame(rng, 2_000, shift=2.0), reference)
    assert (shifted["psi"] > DRIFT).all(), shifted
    widened = psi_table(_frame(rng, 2_000, scale=2.0), reference)
    assert widened.filter(pl.col("variable") == "price")["psi"].item() > DRIFT


def test_values_turning_null_are_drift_and_unknown_columns_are_ignored():
    rng = np.random.default_rng(2)
    reference = profile(_frame(rng, 5_000), ["price"])
    day = _frame(rng, 1_000).with_columns(
        price=pl.when(pl.int_range(pl.len()) % 2 == 0).then(None).otherwise(pl.col("price"))
    )
    table = psi_table(day, reference)
    assert table["variable"].to_list() == ["price"]
    assert table["psi"].item() > DRIFT
