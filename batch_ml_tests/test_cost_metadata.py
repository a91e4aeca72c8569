"""Every asset records its cost per partition: wall time and the step's own peak memory."""

import sys

import numpy as np
import pytest

from batch_ml.platform.common import measured

linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="a step's own peak needs /proc/self/clear_refs (Linux)"
)


@linux_only
def test_peak_memory_is_the_steps_own_not_the_processs():
    with measured() as big:
        block = np.ones(50_000_000)  # 400 MB, touched
        del block
    with measured() as small:
        np.ones(1_000)
    assert big["peak_rss_scope"] == small["peak_rss_scope"] == "step"
    assert big["peak_rss_mb"] - small["peak_rss_mb"] > 300


def test_a_range_step_records_its_time_per_partition():
    with measured(4) as cost:
        pass
    assert cost["partitions_in_step"] == 4
    assert cost["duration_per_partition_s"] == pytest.approx(cost["duration_s"] / 4, abs=1e-4)
    with measured() as single:
        pass
    assert "partitions_in_step" not in single and single["duration_s"] >= 0


@pytest.mark.integration
def test_openmp_threads_wait_passively_unless_the_environment_says_otherwise():
    """LightGBM's spinning OpenMP threads make training crawl on a busy machine."""
    import os
    import subprocess

    probe = "import batch_ml, lightgbm, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = [sys.executable, "-c", probe]
    assert subprocess.check_output(run, env=env, text=True).strip() == "PASSIVE"
    active = {**env, "OMP_WAIT_POLICY": "ACTIVE"}
    assert subprocess.check_output(run, env=active, text=True).strip() == "ACTIVE"
