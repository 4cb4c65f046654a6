"""The mini tier's world: a compositional shapes world that small models can learn on a CPU,
written in every format the full tier reads (the tiny tier's writers, at the world's sizes)."""
