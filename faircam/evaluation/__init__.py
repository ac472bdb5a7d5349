"""The evaluating half: `faircam evaluate` (locally or on Ray), its per-image measures, and the cache file it writes."""
