"""How long the harness's MLflow client waits out a tracking server that does not answer, and
how it says so when it gives up. mlflow is imported where an error is read, so that `repro`
sets the retries without loading it.

MLflow's client retries a failed request with exponential backoff (each wait capped at 120 s by
urllib3). The harness's jobs run for hours and a server restart or a database failover takes
minutes, so they retry as often as MLflow allows: 10 retries, 2 s doubling, about ten minutes
in all, each request given 60 s. A setting already in the environment wins."""

from __future__ import annotations

import os

PATIENT_CLIENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def use_patient_client() -> None:
    for name, value in PATIENT_CLIENT.items():
        os.environ.setdefault(name, value)


def unanswered_request(error: BaseException) -> str | None:
    """MLflow's message, where `error` (or what it was raised from) is a tracking request that
    never got an answer: no connection, or none in time, on every retry."""
    import requests
    from mlflow.exceptions import MlflowException

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, MlflowException) and isinstance(
                seen.__cause__ or seen.__context__, (requests.ConnectionError, requests.Timeout)):
            return seen.message
        seen = seen.__cause__ or seen.__context__
    return None


def server_gone_message(error: BaseException) -> str | None:
    """One line for the user, where `error` is an unanswered tracking request."""
    detail = unanswered_request(error)
    if detail is None:
        return None
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    return (f"the MLflow tracking server did not answer after {retries} retries "
            "(MLFLOW_HTTP_REQUEST_MAX_RETRIES / _BACKOFF_FACTOR / _TIMEOUT); runs stopped with their "
            f"checkpoints kept, and `repro run` again resumes them once it is back ({detail[:300]})")
