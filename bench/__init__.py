"""faircam's benchmarks: `python -m bench` runs them all and prints the figures (see bench/README.md)."""
