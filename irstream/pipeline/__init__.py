"""The run loop: sources -> detector -> tracker -> outputs, one lane per source (run.py), and
its [run] config (config.py)."""
