"""Contracts every layer shares: errors, atomic files, config schema, run specs and keys, records and their store, model and plugin registries, the Method contract."""
