"""The torch-free CAM overlay equals pytorch-grad-cam's own blend."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pytorch_grad_cam.utils.image import show_cam_on_image

from faircam.charts.figures import overlay


@pytest.mark.parametrize("weight", [0.5, 0.3, 1.0])
def test_overlay_equals_show_cam_on_image(weight):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    cam = rng.random((40, 30), dtype=np.float32)
    expected = show_cam_on_image(image.astype(np.float32) / 255, cam, use_rgb=True, image_weight=1 - weight)
    assert np.array_equal(overlay(image, cam, weight), expected)


def test_figures_import_no_torch():
    code = ("import sys, faircam.charts.figures, faircam.audit.explanations, faircam.charts.audit_plots; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
