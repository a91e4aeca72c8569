"""Content digests (`batch-ml digest`): what makes two tables the same, and what does not."""

import math

import polars as pl

from batch_ml.platform.storage.digest import frame_digest

FRAME = pl.DataFrame(
    {"day": ["2025-01-02", "2025-01-01"], "sum": [44.0, -0.75], "run_id": ["a", "b"]}
)


def test_row_order_excluded_columns_and_summation_noise_do_not_change_the_digest():
    reordered = FRAME.reverse().with_columns(run_id=pl.lit("another run"))
    # The same sums added in another order: off by one or two units in the last place.
    noisy = reordered.with_columns(
        pl.Series("sum", [math.nextafter(-0.75, 0.0), math.nextafter(44.0, 0.0)])
    )
    tiny = FRAME.with_columns(pl.Series("sum", [44.0, -0.75 + 1e-13]))
    digests = {frame_digest(f, exclude=["run_id"]) for f in (FRAME, reordered, noisy, tiny)}
    assert len(digests) == 1


def test_a_changed_value_row_or_column_changes_the_digest():
    base = frame_digest(FRAME, exclude=["run_id"])
    changed = FRAME.with_columns(pl.Series("sum", [44.0001, -0.75]))
    assert frame_digest(changed, exclude=["run_id"]) != base
    assert frame_digest(FRAME.head(1), exclude=["run_id"]) != base
    assert frame_digest(FRAME) != base  # run_id counted now
    zero = FRAME.with_columns(pl.Series("sum", [44.0, 0.0]))
    assert frame_digest(zero, exclude=["run_id"]) != base
