"""Measuring quality: segmentation metrics, still-image evaluation, eval-track, the calibrated operating point."""
