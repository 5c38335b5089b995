"""The REST API (the seed's endpoints) over the Dagster instance and the warehouse (docs/api.md)."""
