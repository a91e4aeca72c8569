"""What a product is to the platform: a declaration the platform builds everything else from.

A product is a package under `batch_ml/products/` whose `product.py` holds a `Product`: its
name (the `[name]` table of the project config, the prefix of its asset groups, jobs,
schedules and sensor), owners, its landing sources, its first model week, its assets by role,
and `assets`, which builds them with the platform's factories. From it the platform generates
the jobs, schedules and landing sensor (`batch_ml.platform.orchestration`) and applies what is
the same for every product: asset groups `<product>_<stage>`, owners, and the
`batch_ml/product` tag, so that the UI, `dg list defs` and selections such as
`tag:batch_ml/product=<name>` show products as such. Resources, the executor and the automation
sensor belong to the code location (`batch_ml.definitions`), not to a product.

Roles of the assets:
- `reference`: unpartitioned inputs loaded once and when their files change (static sources,
  e.g. a product catalog);
- `daily`: the daily chain on the daily partitions, sources first (sources -> features ->
  predictions -> monitoring -> evaluation): one run materializes a day's chain;
- `weekly`: on the weekly partitions, e.g. a model and its champion/challenger gate;
- `override`: the asset a person's run config writes (a champion pin or rollback);
- `reports`: unpartitioned roll-ups over all days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    from batch_ml.config import ProjectConfig
    from batch_ml.platform.sources.contract import Source

PRODUCT_TAG = "batch_ml/product"


@dataclass(frozen=True)
class DemoHooks:
    """How `batch-ml demo` runs a product on its embedded demo data."""

    # Writes the product's demo landing files: (cfg, force) -> files written per source, or
    # None when they are already there and `force` is False.
    generate: Callable[[ProjectConfig, bool], Mapping[str, int] | None]
    # The daily source whose landed days are the period the demo materializes.
    period_source: str
    # The product's figures after the run: (cfg, instance) -> (console lines, JSON values).
    summarize: Callable[[ProjectConfig, Any], tuple[list[str], dict]]


@dataclass(frozen=True)
class Product:
    name: str
    description: str
    owners: tuple[str, ...]
    # The product's landing sources, from the project config.
    sources: Callable[[ProjectConfig], Mapping[str, Source]]
    # The Monday of the first weekly partition (the first week with enough history).
    first_week: Callable[[ProjectConfig], dt.date]
    # Builds the product's assets and checks from a `BuildContext` of this product.
    assets: Callable[[Any], Sequence[Any]]
    reference: tuple[str, ...]
    daily: tuple[str, ...]
    weekly: tuple[str, ...] = ()
    override: str | None = None
    reports: tuple[str, ...] = ()
    # The tables its runs compute from their inputs, each with the columns that record when,
    # where or by which run rather than what: `batch-ml digest` hashes the rest, so two runs
    # on the same inputs and seed can be compared.
    outputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    demo: DemoHooks | None = None

    def group(self, stage: str) -> str:
        return f"{self.name}_{stage}"

    def with_defaults(self, spec: dg.AssetSpec) -> dg.AssetSpec:
        """An asset of the product with its group prefixed, its owners and the product tag."""
        return spec.replace_attributes(
            group_name=self.group(spec.group_name or "default"),
            owners=[*self.owners, *(o for o in spec.owners if o not in self.owners)],
        ).merge_attributes(tags={PRODUCT_TAG: self.name})

    def _job(self, role: str) -> str:
        return f"{self.name}_{role}_job"

    @property
    def daily_job(self) -> str:
        return self._job("daily")

    @property
    def training_job(self) -> str:
        return self._job("training")

    @property
    def reference_data_job(self) -> str:
        return self._job("reference_data")

    @property
    def champion_override_job(self) -> str:
        return self._job("champion_override")

    @property
    def report_job(self) -> str:
        return self._job("report")

    @property
    def daily_schedule(self) -> str:
        return f"{self.name}_daily_schedule"

    @property
    def training_schedule(self) -> str:
        return f"{self.name}_training_schedule"

    @property
    def report_schedule(self) -> str:
        return f"{self.name}_report_schedule"

    @property
    def landing_sensor(self) -> str:
        return f"{self.name}_landing_sensor"
