"""MLflow: the campaign and run records, the store a command opens, the names of tags and params,
what a run logs as params and dataset inputs, and where its code came from."""
