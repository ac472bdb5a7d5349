"""faircam: audit a face gender classifier with class activation maps, per group."""

__version__ = "0.1.0"
