"""The embedded default: local Postgres, the local runner, demo data."""
