"""The classifiers faircam audits: its own network and checkpoint file, the registry, third-party ports, training."""
