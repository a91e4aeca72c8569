"""What a product is to the platform, and the defaults every product's definitions share.

A product is a package under `batch_ml/products/` whose `product.py` holds a `Product`: its
name (the `[name]` table of the project config, the prefix of its asset groups and jobs), its
owners, and `build`, which returns its Dagster definitions (assets, checks, jobs, schedules,
sensors) made with the platform's factories. The platform adds what is the same for every
product: asset groups `<product>_<stage>`, owners, and the `batch_ml/product` tag, so that
the UI, `dg list defs` and selections such as `tag:batch_ml/product=<name>` show products as
such. Resources, the executor and the automation sensor belong to the code location
(`batch_ml.definitions`), not to a product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from batch_ml.config import ProjectConfig

PRODUCT_TAG = "batch_ml/product"


@dataclass(frozen=True)
class Product:
    name: str
    owners: tuple[str, ...]
    description: str
    build: Callable[[ProjectConfig], dg.Definitions]

    def group(self, stage: str) -> str:
        return f"{self.name}_{stage}"

    def definitions(self, cfg: ProjectConfig) -> dg.Definitions:
        """The product's definitions with the platform's defaults applied to every asset."""

        def with_defaults(spec: dg.AssetSpec) -> dg.AssetSpec:
            stage = spec.group_name or "default"
            return spec.replace_attributes(
                group_name=stage if stage.startswith(f"{self.name}_") else self.group(stage),
                owners=[*self.owners, *(o for o in spec.owners if o not in self.owners)],
            ).merge_attributes(tags={PRODUCT_TAG: self.name})

        return self.build(cfg).map_asset_specs(func=with_defaults)
