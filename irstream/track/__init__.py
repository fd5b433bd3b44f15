"""From a probability map to tracks: targets (components), the on-screen-display mask, global motion, the clutter map, the Kalman tracker, and the tracking stage."""
