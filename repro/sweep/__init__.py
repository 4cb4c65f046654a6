"""Optuna sweeps over one experiment's config, each trial a tracked MLflow run.

Importing the package is cheap (no optuna, torch or mlflow); the modules that need them import
them themselves.
"""
