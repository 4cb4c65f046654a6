"""What a run does: recipes, training, data, evaluation and the tiny tier, in role packages, beside
the typed run config (config.py) every layer reads. Imports models/, never repro/."""
