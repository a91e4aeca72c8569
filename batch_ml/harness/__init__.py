"""What the tests and the benchmarks share: project configs and demo projects (`project`),
Dagster services started and stopped (`services`), the GraphQL they send (`graphql`), headless
Chromium (`browser`). Nothing imports it at run time; the tests' pytest plugin
(`batch_ml_tests/plugin.py`) and the benchmarks do."""
