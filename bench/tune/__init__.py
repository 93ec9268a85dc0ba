"""Optuna studies: `bench tune` and the suite protocol's tuned rows."""
