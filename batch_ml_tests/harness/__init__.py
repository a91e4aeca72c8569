"""What the tests and the benchmarks share: project configs and demo projects (`project`),
Dagster services started and stopped (`services`), the GraphQL they send (`graphql`), headless
Chromium (`browser`), and the pytest plugin with the test layers and fixtures (`plugin`)."""
