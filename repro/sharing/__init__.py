"""A trained model outside the harness: `repro export` and its model card, `repro generate`, and
what a command's RUN argument may name."""
