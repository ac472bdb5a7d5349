"""Four maps for one image: faircam's shared pass against pytorch-grad-cam's own per-method calls.

Every contender gets the same model, the same preprocessed image and the same target class. The
floor is one bare forward and backward pass with no hooks: no CAM method can cost less.
"""

from __future__ import annotations

import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from bench.common import median, timings
from faircam.vision.cams import METHODS


def run(pipeline, image, repeats: int = 30) -> dict:
    model = pipeline.model
    net, layer = model.net, model.net.cam_layer
    inputs = model.to_tensor([pipeline.view(image).image])
    target = int(pipeline.explainer(inputs, None, model.outputs).targets[0])
    targets = [ClassifierOutputTarget(target)]

    # The library's objects are built once, as an app would keep them; only the calls are timed.
    library = {name: cls(model=net, target_layers=[layer]) for name, cls in METHODS.items()}

    def four_library_calls() -> None:
        for cam in library.values():
            cam(input_tensor=inputs, targets=targets)

    def one_library_call() -> None:
        library["Grad-CAM"](input_tensor=inputs, targets=targets)

    def shared_pass() -> None:
        assert pipeline.explainer(inputs, [target], model.outputs).maps  # the maps are made when first read

    def forward_backward() -> None:
        net.zero_grad()
        net(inputs)[0, target].backward()

    # Interleaved rounds, so a burst of load from elsewhere hits every contender alike.
    contenders = {"faircam shared pass (4 maps)": shared_pass, "pytorch-grad-cam, 4 calls": four_library_calls,
                  "pytorch-grad-cam, 1 call (Grad-CAM)": one_library_call,
                  "bare forward + backward": forward_backward}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    rounds = 5
    for _ in range(rounds):
        for name, fn in contenders.items():
            times[name] += timings(fn, max(1, repeats // rounds), warmup=1)
    for cam in library.values():
        cam.activations_and_grads.release()

    medians = {name: median([w for w, _ in t]) for name, t in times.items()}
    cpu = {name: median([c for _, c in t]) for name, t in times.items()}
    shared = medians["faircam shared pass (4 maps)"]
    return {
        "input": f"1 x 3 x {model.input_size} x {model.input_size}, {model.arch}, torch threads "
                 f"{torch.get_num_threads()}, {len(times[next(iter(times))])} timed calls each",
        "median_ms": {name: round(1000 * m, 2) for name, m in medians.items()},
        "median_cpu_ms": {name: round(1000 * m, 2) for name, m in cpu.items()},
        "shared / 1 library call, CPU time": round(cpu["faircam shared pass (4 maps)"]
                                                   / cpu["pytorch-grad-cam, 1 call (Grad-CAM)"], 3),
        "shared / 4 library calls": round(shared / medians["pytorch-grad-cam, 4 calls"], 3),
        "shared / 1 library call": round(shared / medians["pytorch-grad-cam, 1 call (Grad-CAM)"], 3),
        "shared / bare forward+backward": round(shared / medians["bare forward + backward"], 3),
        "target": "shared / 1 library call <= 1.3",
        "met": shared / medians["pytorch-grad-cam, 1 call (Grad-CAM)"] <= 1.3,
    }
