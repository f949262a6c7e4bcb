"""Sandbox adapters: a helpdesk and an identity provider over a local SQLite file, with demo data."""
