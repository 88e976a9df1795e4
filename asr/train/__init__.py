"""Training: data loading, optimisation schedule, checkpoints, the training loop."""
