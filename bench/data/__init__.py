"""Datasets and what a run reads from them: loaders, splits, prepared task data, views."""
