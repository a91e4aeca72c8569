"""The products of the platform: name -> package. Each package holds `config.parse_section`
(its `[name]` table of the project config) and `product.PRODUCT` (its declaration, from
which the platform builds its definitions); see docs/architecture.md. This module only names
them, so the config layer can find their sections without importing product code.
"""

CATALOG = {
    "forecasting": "batch_ml.products.forecasting",
    "sentiment": "batch_ml.products.sentiment",
}
