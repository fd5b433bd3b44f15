"""Training: the loop, its losses, batches from the real-data mix, hard-negative mining, checkpoints and cards."""
