"""Recipes: what a run does. One file per recipe (align, e2e, instruct, baseline, oracle), the
registry that declares each once (registry.py), the pieces they share (modules.py, diffusion.py),
the runner that seeds, trains and evaluates (run.py) and generation from a trained run."""
