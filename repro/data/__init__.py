"""The `repro data` commands: building paper-scale data in parts, and checking a plan's sources
before anything is launched."""
