"""Training: the loop every trainer recipe shares, the Objective it trains, checkpoints, DDP and
FSDP, preemption, analytic FLOPs, the encoder-output cache and the tracker protocol."""
