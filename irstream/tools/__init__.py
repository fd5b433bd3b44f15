"""Measuring speed and endurance: `irstream bench` and `irstream soak`."""
