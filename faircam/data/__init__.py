"""Inputs: FairFace folders and their checks, safe image decoding, the FairFace download."""
