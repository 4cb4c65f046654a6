"""Kosmos-G's released checkpoints (xichenpan/Kosmos-G): read safely, mapped onto this harness's models."""
