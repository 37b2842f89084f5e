"""Readers of public datasets used by tests, benchmarks and the importer."""
