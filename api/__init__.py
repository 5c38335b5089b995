"""The REST API (the seed's endpoints) over Dagster's GraphQL API and the warehouse (DESIGN.md §9)."""
