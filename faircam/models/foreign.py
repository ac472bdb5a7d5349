"""Models brought by their users, loaded safely and adapted to faircam: the `huggingface`, `torchvision`, `timm` and
`onnx` kinds of `faircam.models.kinds.KINDS`.

Each loader reads only tensors (safetensors, `torch.load(weights_only=True)`, ONNX initializers) and runs no code
that came with the model (`trust_remote_code` is never set; an ONNX graph is rebuilt from its operators by
onnx2torch, and its answers are checked against onnxruntime's; a graph onnx2torch cannot convert runs in onnxruntime
as a black box, `OnnxRuntimeNet`, whose maps are `faircam.vision.occlusion`'s occlusion maps). `Adapted` puts the
network's outputs in faircam's task and class order, matched by name (`kinds.map_outputs`), a sigmoid head becoming
two logits, so every reader of a `LoadedModel` works unchanged. `cam_layers` lists the layers that can explain any
torch network from one dummy forward, as torch-cam finds one: the modules whose output keeps a spatial grid, or a
square of patch tokens reshaped into their grid, prefix tokens (class, distillation) dropped. faircam's choice among
them is the last grid, or, for transformers whose layers output tokens (ViT, DeiT, BEiT, SigLIP, Swin), the input of
the last block (its first normalisation); its user may name another (`cam_layer` in the description, the store's
manifest, `faircam evaluate --cam-layer`), which `find_cam_layer` finds by name.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from faircam.errors import ModelError
from faircam.models.kinds import (
    VIEWS,
    Head,
    ModelSpec,
    check_size,
    files_sha256,
    layer_choices,
    map_outputs,
    read_json,
    read_spec,
)
from faircam.models.model import LoadedModel
from faircam.tasks import TASKS

if TYPE_CHECKING:
    from faircam.models.registry import ModelEntry

# An ONNX graph converted to torch must give onnxruntime's answers to within this (float32 rounding).
ONNX_TOLERANCE = 1e-4


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _logits(output: Any) -> torch.Tensor:
    """The logits of a network's output: a tensor, a Hugging Face output's `logits`, or a tuple's first."""
    output = getattr(output, "logits", output)
    return output[0] if isinstance(output, tuple | list) else output


class Adapted(nn.Module):
    """A brought network with its outputs in faircam's task and class order (`TASKS`' order, the tasks it has):
    each class's logit taken by name from the head that names it; a sigmoid head's logit z becomes (z/2, -z/2) or
    (-z/2, z/2), whose softmax is (σ(z), 1 - σ(z)) or the reverse, so a map of either class follows z (a constant 0
    would leave the other class's maps without gradient). `cam_layer` and `cam_reshape` are what `CamExplainer`
    hooks."""

    def __init__(self, net: nn.Module, heads: list[Head], cam_layer: nn.Module, cam_reshape: TokenGrid | None):
        super().__init__()
        self.net = net
        self.heads = sorted(heads, key=lambda h: list(TASKS).index(h.task))
        self._cam = (cam_layer,)  # a tuple, so the layer is not registered a second time as a submodule
        self.cam_reshape = cam_reshape

    @property
    def cam_layer(self) -> nn.Module:
        return self._cam[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = _logits(self.net(x))
        parts = []
        for head in self.heads:
            spec = TASKS[head.task]
            if head.onto:  # a coarser head: its own classes, in its own order
                parts.append(logits[:, head.start:head.start + head.width])
            elif head.sigmoid:
                half = logits[:, head.start:head.start + 1] / 2
                parts.append(torch.cat([half, -half] if head.classes[0] == spec.classes[0] else [-half, half], dim=1))
            else:
                parts.append(logits[:, [head.start + head.classes.index(c) for c in spec.classes]])
        return torch.cat(parts, dim=1)


@dataclass(frozen=True)
class TokenGrid:
    """A transformer layer's tokens (N, prefix + side², C) as the (N, C, side, side) grid the CAM methods read."""

    prefix: int
    side: int

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens[:, self.prefix:, :]
        return grid.reshape(grid.shape[0], self.side, self.side, grid.shape[2]).permute(0, 3, 1, 2)


def _token_grid(shape: tuple[int, ...]) -> TokenGrid | None:
    """The grid of a (1, tokens, channels) output whose tokens are a square of patches after at most 4 prefix
    tokens (class, distillation, registers)."""
    if len(shape) != 3:
        return None
    side = math.isqrt(shape[1])
    prefix = shape[1] - side * side
    return TokenGrid(prefix, side) if side >= 2 and prefix <= 4 else None


def _is_grid(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[2] > 1 and shape[3] > 1


@dataclass(frozen=True)
class CamLayer:
    """A layer whose maps can explain a network: its `name` (as `named_modules` has it), the `module` to hook, its
    map's `grid` (rows, columns), the `reshape` of its tokens into that grid (None for a layer whose output is a
    grid), and whether it is faircam's choice (`default`)."""

    name: str
    module: nn.Module
    grid: tuple[int, int]
    reshape: TokenGrid | None
    default: bool = False

    def described(self) -> dict[str, Any]:
        """As `LoadedModel.info["cam_layers"]` and the store's facts list it (JSON)."""
        return {"name": self.name, "grid": list(self.grid), "default": self.default}


def cam_layers(net: nn.Module, input_size: int) -> list[CamLayer]:
    """The layers whose maps can explain `net`, in the order they run, from one dummy forward: the modules whose
    output keeps a spatial grid or a square of patch tokens, up to faircam's choice (marked `default`: the last
    grid, or for a transformer the input of its last block, `_block_input`). A module that runs more than once
    (a ReLU shared within a block) is left out, its maps would mix two places; so are those after faircam's
    choice in a transformer, whose patch tokens feed no answer and so carry no gradient."""
    finished: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def record(name: str, module: nn.Module, args: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            finished.append((name, module, tuple(output.shape)))

    modules = dict(net.named_modules())
    hooks = [m.register_forward_hook(lambda mod, a, o, n=n: record(n, mod, a, o)) for n, m in modules.items() if n]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, input_size, input_size))
    finally:
        for hook in hooks:
            hook.remove()
    grids = [i for i, (_, _, s) in enumerate(finished) if _is_grid(s)]
    tokens = [i for i, (_, _, s) in enumerate(finished) if _token_grid(s)]
    if grids and (not tokens or grids[-1] > tokens[-1]):
        chosen = finished[grids[-1]][0]
    elif not tokens:
        raise ModelError("no layer of the network keeps a spatial grid or a square of patch tokens, so it has no "
                         "layer to explain.")
    else:
        chosen = _block_input(finished, modules)
    runs = Counter(name for name, _, _ in finished)
    last = max(i for i, (n, _, _) in enumerate(finished) if n == chosen)
    found: dict[str, CamLayer] = {}
    for name, module, shape in finished[:last + 1]:
        if name in found or (runs[name] > 1 and name != chosen):
            continue
        reshape = None if _is_grid(shape) else _token_grid(shape)
        if reshape is not None or _is_grid(shape):
            grid = (shape[2], shape[3]) if reshape is None else (reshape.side, reshape.side)
            found[name] = CamLayer(name, module, grid, reshape, default=name == chosen)
    return list(found.values())


def find_cam_layer(net: nn.Module, input_size: int, name: str | None = None) -> tuple[CamLayer, list[CamLayer]]:
    """The layer whose maps explain `net` (the one named `name` among its `cam_layers`, or faircam's choice for
    None) and all of them; `ModelError` naming a few of them when `name` is not one."""
    layers = cam_layers(net, input_size)
    if name is None:
        return next(layer for layer in layers if layer.default), layers
    found = next((layer for layer in layers if layer.name == name), None)
    if found is None:
        why = "has no layer named" if name not in dict(net.named_modules()) else "cannot explain its answers with"
        raise ModelError(f"it {why} {name!r} (its CAM layers: {layer_choices([la.described() for la in layers])}).")
    return found, layers


def _block_input(finished: list[tuple[str, nn.Module, tuple[int, ...]]], modules: dict[str, nn.Module]) -> str:
    """The input of a transformer's last block: its first normalisation to run (ViT's layernorm_before, timm's
    norm1), else the block before it. The last block's output feeds the class token alone to the head, so its
    patch tokens carry no gradient; its input does, through the block's attention."""
    last_at = {name: i for i, (name, _, _) in enumerate(finished)}
    # The blocks: a list of at least two modules of one type (`encoder.layer`, `blocks`), the latest to finish.
    lists = [(name, list(m.children())) for name, m in modules.items()
             if isinstance(m, nn.ModuleList | nn.Sequential) and len(m) >= 2
             and len({type(c) for c in m.children()}) == 1]
    lists = [(name, children) for name, children in lists if f"{name}.{len(children) - 1}" in last_at]
    if lists:
        name, children = max(lists, key=lambda item: last_at[f"{item[0]}.{len(item[1]) - 1}"])
        block = f"{name}.{len(children) - 1}"
        for layer, module, shape in finished:
            if layer.startswith(block + ".") and isinstance(module, nn.LayerNorm | nn.GroupNorm) and _token_grid(shape):
                return layer
        before = f"{name}.{len(children) - 2}"
        shape = next((s for n, _, s in finished if n == before), ())
        if _token_grid(shape):
            return before
    raise ModelError("its layers output tokens, but faircam found no block whose input is a square of patch tokens "
                     "to explain.")


class OnnxRuntimeNet(nn.Module):
    """An ONNX graph run by onnxruntime as a black box: answers without layers or gradients, so its maps are
    occlusion maps (`faircam.vision.occlusion`), not CAMs."""

    def __init__(self, session: Any):
        super().__init__()
        self.session = session
        self.input = session.get_inputs()[0].name
        # No weights torch can see: this empty tensor says which device batches are on (`LoadedModel.to_tensor`).
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)


def _adapt(net: nn.Module, heads: list[Head], input_size: int, source: str, cam_layer: str | None
           ) -> tuple[Adapted, dict[str, Any]]:
    """`net` in eval mode, checked (its output width is the heads' and its answers are numbers), adapted to
    faircam's order with its CAM layer (`cam_layer`, or faircam's choice for None); and what `LoadedModel.info`
    says of its layers: the one its maps explain and the others it could explain with (a black box has none)."""
    net = net.float().eval()
    width = sum(h.width for h in heads)
    with torch.no_grad():
        try:
            logits = _logits(net(torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))))
        except Exception as exc:  # a network that cannot take the input runs into any of torch's errors
            raise ModelError(f"{source} does not run on a {input_size}x{input_size} image ({_first_line(exc)}).") \
                from None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] != width:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"{source}: its output is {shape} per batch, but its classes name {width} outputs.")
    if not torch.isfinite(logits).all():
        raise ModelError(f"{source} predicts NaN or infinite scores on a test image.")
    if isinstance(net, OnnxRuntimeNet):
        if cam_layer:
            raise ModelError(f"{source} runs in onnxruntime as a black box, with occlusion maps: it has no layer to "
                             f"choose (asked for {cam_layer!r}).")
        return Adapted(net, heads, None, None), {"maps": "occlusion (black box: no layer to explain)"}
    try:
        chosen, layers = find_cam_layer(net, input_size, cam_layer)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
    return Adapted(net, heads, chosen.module, chosen.reshape), {
        "cam_layer": chosen.name,
        "cam_layers": [layer.described() for layer in layers]}


def _loaded(net: nn.Module, heads: list[Head], entry: ModelEntry, arch: str, input_size: int,
            mean: tuple[float, ...], std: tuple[float, ...], view: str, files: list[Path], source: str,
            cam_layer: str | None) -> LoadedModel:
    adapted, layers = _adapt(net, heads, input_size, source, cam_layer)
    tasks = {h.task: h.spec.classes for h in adapted.heads}
    return LoadedModel(
        net=adapted, arch=arch, input_size=input_size, mean=tuple(mean), std=tuple(std), tasks=tasks,
        onto={h.task: dict(h.onto) for h in heads if h.onto},
        path=entry.weights, sha256=files_sha256(files), alignment=VIEWS[view], task=next(iter(tasks)),
        info={"name": entry.name, "kind": entry.kind, "view": view, **layers,
              "label_mapping": {h.task: h.mapping() for h in heads}},
    )


# --- Hugging Face ---------------------------------------------------------------------------------------------


def _hf_preprocessing(folder: Path) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(input size, mean, std) from the folder's preprocessor_config.json: the crop it feeds the network (the
    resized size without a centre crop), its normalisation on the 0-1 scale."""
    path = folder / "preprocessor_config.json"
    raw = read_json(path, f"{folder} has no preprocessor_config.json (its resize, mean and std).")
    size = raw.get("crop_size") if raw.get("do_center_crop") else raw.get("size")
    if isinstance(size, dict):
        side = size.get("height", size.get("shortest_edge"))
        if "width" in size and size["width"] != side:
            raise ModelError(f"{path}: a {size['width']}x{side} input; faircam feeds square images.")
        size = side
    if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 1024:
        raise ModelError(f"{path}: no usable input size (size or crop_size from 16 to 1024 pixels).")
    rescale = raw.get("rescale_factor", 1 / 255)
    if raw.get("do_rescale", True) is False or not isinstance(rescale, int | float) or abs(rescale - 1 / 255) > 1e-6:
        raise ModelError(f"{path}: faircam feeds pixels scaled to 0-1 (rescale_factor 1/255), not {rescale}.")
    mean, std = ([0.0] * 3, [1.0] * 3) if raw.get("do_normalize", True) is False else \
        (raw.get("image_mean", [0.5] * 3), raw.get("image_std", [0.5] * 3))
    ok = all(isinstance(v, list) and len(v) == 3 and all(isinstance(x, int | float) and math.isfinite(x) for x in v)
             for v in (mean, std)) and all(x > 0 for x in std)
    if not ok:
        raise ModelError(f"{path}: image_mean and image_std must be three numbers each (std above 0).")
    return size, tuple(map(float, mean)), tuple(map(float, std))


def _huggingface(entry: ModelEntry) -> LoadedModel:
    folder = Path(entry.weights)
    source = str(folder)
    weights = sorted(p for p in folder.glob("*.safetensors"))
    if not weights:
        raise ModelError(f"{folder} holds no .safetensors weights: faircam loads no pickled (.bin) weights.")
    check_size(weights, source)
    config = read_json(folder / "config.json", f"{folder}/config.json is not readable JSON.")
    if not isinstance(config, dict):
        raise ModelError(f"{folder}/config.json is not a JSON object.")
    if "auto_map" in config:
        raise ModelError(f"{folder} needs its own code to run (auto_map in config.json); faircam runs no code that "
                         "comes with a model.")
    size, mean, std = _hf_preprocessing(folder)
    import transformers
    from transformers import AutoModelForImageClassification

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        net = AutoModelForImageClassification.from_pretrained(folder, local_files_only=True, trust_remote_code=False,
                                                              use_safetensors=True)
    except Exception as exc:  # transformers raises many types for a folder it cannot use
        raise ModelError(f"{folder} does not load as a Hugging Face image classifier ({_first_line(exc)}).") from None
    id2label = {int(k): v for k, v in net.config.id2label.items()}
    if sorted(id2label) != list(range(net.config.num_labels)):
        raise ModelError(f"{folder}/config.json: id2label does not name outputs 0 to {net.config.num_labels - 1}.")
    heads = map_outputs([(None, [id2label[i] for i in range(len(id2label))])], source)
    files = [folder / "config.json", folder / "preprocessor_config.json", *weights]
    return _loaded(net, heads, entry, f"{net.config.model_type} ({type(net).__name__})", size, mean, std, "whole",
                   files, source, entry.cam_layer)


# --- a faircam-model.json: torchvision, timm, ONNX ------------------------------------------------------------


def _state_dict(path: Path, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file, or of a .pt/.pth file read with `weights_only=True` (a state dict, or a
    dict holding one under "state_dict" or "model")."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign files raise many types
        raise ModelError(f"{source}: {path.name} is not readable weights ({_first_line(exc)}).") from None
    if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{source}: {path.name} holds no state dict of tensors.")
    return state


def _load_state(net: nn.Module, state: dict[str, torch.Tensor], spec: ModelSpec, width: int) -> nn.Module:
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{spec.path}: the weights do not fit {spec.format} {spec.arch} with {width} outputs "
                         f"({_first_line(exc)}).") from None
    return net


def _torchvision(spec: ModelSpec, width: int) -> nn.Module:
    import torchvision

    if spec.arch not in torchvision.models.list_models(module=torchvision.models):
        raise ModelError(f"{spec.path}: torchvision has no classification architecture {spec.arch!r}.")
    # weights=None: the architecture only, nothing downloaded.
    net = torchvision.models.get_model(spec.arch, weights=None, num_classes=width)
    return _load_state(net, _state_dict(spec.weights, str(spec.path)), spec, width)


def _timm(spec: ModelSpec, width: int) -> nn.Module:
    import timm

    if not timm.is_model(spec.arch):
        raise ModelError(f"{spec.path}: timm has no architecture {spec.arch!r}.")
    net = timm.create_model(spec.arch, pretrained=False, num_classes=width)
    return _load_state(net, _state_dict(spec.weights, str(spec.path)), spec, width)


def _without_identities(graph: Any) -> Any:
    """A copy of the ONNX model with its Identity nodes dropped (their readers wired to their inputs) and its
    Constant nodes made initializers: the same function. torch's exporter writes both at opset 19 and later, which
    onnx2torch has no converters for, and hides weights behind Identity nodes, where its converters look for
    initializers."""
    model = type(graph)()
    model.CopyFrom(graph)
    outputs = {o.name for o in model.graph.output}
    alias, kept = {}, []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
        elif node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            tensor = type(node.attribute[0].t)()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = alias.get(name, name)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def _onnx(spec: ModelSpec, width: int) -> nn.Module:
    """The graph converted to torch by onnx2torch, its answers checked against onnxruntime's on a test batch; a
    graph onnx2torch cannot convert runs in onnxruntime as a black box (`OnnxRuntimeNet`, occlusion maps)."""
    import onnx
    import onnxruntime

    source = str(spec.path)
    try:
        graph = onnx.load(str(spec.weights), load_external_data=False)
    except Exception as exc:  # protobuf's errors for a file that is not ONNX
        raise ModelError(f"{source}: {spec.weights.name} is not a readable ONNX file ({_first_line(exc)}).") from None
    # Weights in other files would be read from paths the graph names: only self-contained graphs.
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer):
        raise ModelError(f"{source}: {spec.weights.name} keeps its weights in other files; save it as one file.")
    if len(graph.graph.input) - len({t.name for t in graph.graph.initializer}) > 1:
        raise ModelError(f"{source}: the graph takes more than one input; faircam feeds one image batch.")
    from onnx2torch import convert

    batch = torch.rand(2, 3, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0))
    try:
        session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors for a graph it cannot run
        raise ModelError(f"{source}: onnxruntime cannot run the graph ({_first_line(exc)}).") from None
    try:
        net = convert(_without_identities(graph))
    except Exception:  # onnx2torch raises NotImplementedError and others for what it cannot convert
        return OnnxRuntimeNet(session)
    try:
        expected = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
        with torch.no_grad():
            got = _logits(net.eval()(batch)).numpy()
    except Exception as exc:  # onnxruntime's and the converted graph's errors for an input they cannot take
        raise ModelError(f"{source}: the graph does not run on a batch of two {spec.input_size}x{spec.input_size} "
                         f"images ({_first_line(exc)}); export it with a dynamic batch size.") from None
    if got.shape != expected.shape or not np.allclose(got, expected, atol=ONNX_TOLERANCE, rtol=ONNX_TOLERANCE):
        raise ModelError(f"{source}: the graph converted to torch does not give onnxruntime's answers, so its maps "
                         "would explain another model.")
    return net


SPEC_LOADERS = {"torchvision": _torchvision, "timm": _timm, "onnx": _onnx}


def _from_spec(entry: ModelEntry) -> LoadedModel:
    spec = read_spec(entry.weights)
    check_size([spec.weights], str(spec.path))
    width = sum(h.width for h in spec.heads)
    net = SPEC_LOADERS[spec.format](spec, width)
    arch = f"{spec.format} {spec.arch}".strip() if spec.format != "onnx" else f"onnx ({spec.weights.name})"
    # A layer chosen for this load (`faircam evaluate --cam-layer`, the store's manifest) over the JSON's own.
    return _loaded(net, list(spec.heads), entry, arch, spec.input_size, spec.mean, spec.std, spec.view,
                   [spec.path, spec.weights], str(spec.path), entry.cam_layer or spec.cam_layer)


def load(entry: ModelEntry) -> LoadedModel:
    """A brought model (an entry of kind huggingface, torchvision, timm or onnx), ready for the pipeline."""
    return _huggingface(entry) if entry.kind == "huggingface" else _from_spec(entry)
