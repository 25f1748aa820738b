"""Training: the loop, optimizer groups, checkpoints, metrics, config checks, devices."""
