"""Launching runs: a plan's table, the campaign of `repro run`, submitit executors (local, debug,
SLURM), what runs inside a job, its lock, signals and failure reasons, and `repro status` / `cancel`."""
