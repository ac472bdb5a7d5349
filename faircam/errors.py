"""The exceptions faircam raises for bad input, in one light module.

The CLI and the pages catch exactly these to print a one-line message instead of a traceback;
keeping them here (no torch, no pandas) lets them be imported cheaply anywhere.
"""


class DataError(ValueError):
    """A data folder or label file that cannot be used as FairFace."""


class ImageError(ValueError):
    """A file or upload that cannot be used as a photo."""


class ModelError(RuntimeError):
    """A checkpoint that is missing, damaged or not a faircam checkpoint."""


class CacheError(RuntimeError):
    """An evaluation cache that is missing, damaged or of another schema."""


class FetchError(RuntimeError):
    """FairFace could not be downloaded (no internet, or the hub changed)."""


class OutputError(ValueError):
    """An output path faircam must not or cannot write: a folder, an input, the wrong kind of file, no write access."""


class ClusterError(RuntimeError):
    """`faircam evaluate --engine ray` could not run: Ray missing, the cluster unreachable, or a worker failed."""


KNOWN_ERRORS = (DataError, ImageError, ModelError, CacheError, FetchError, OutputError, ClusterError)
