"""`repro preflight`: every planned run loaded, stepped, evaluated for a few images and sized on
this machine before the cluster (runner.py), and the one table it ends with (table.py)."""
