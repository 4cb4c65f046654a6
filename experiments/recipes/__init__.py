"""Recipes: what a run does. One file per recipe (align, e2e, instruct, baseline, oracle), each
with its build step, the registry that declares each once (registry.py), the pieces they share
(modules.py, diffusion.py), the runner that seeds, trains and evaluates (run.py), the preflight's
model side (preflight_steps.py) and generation from a trained run."""
