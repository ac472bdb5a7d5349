"""Reading images on a shared classroom server (issue #26), through the command or page a user would use: a small
file declaring nearly the pixel limit costs what its decoded pixels do, and a data image swapped for a link after
its label row was checked is not read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from test_data_folders import folder
from test_images import huge_png
from test_pages import run

import faircam.data.fairface as fairface_module
from faircam.config import PROJECT_ROOT
from faircam.data.fairface import read_data_image
from faircam.errors import ImageError

# `faircam explain` in a process of its own, then its peak RSS in MB (VmHWM, which starts afresh at exec) and
# its exit status on the last line of stderr.
EXPLAIN_PEAK = """
import sys
from faircam.cli import main
code = main(sys.argv[1:])
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) // 1024
print(peak, code, file=sys.stderr)
"""


def explain_peak(path) -> int:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", EXPLAIN_PEAK, "explain", str(path)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    peak, code = done.stderr.split()[-2:]
    assert code == "0", done.stderr
    assert json.loads(done.stdout)["prediction"]
    return int(peak)


def test_explain_of_a_small_16_bit_png_of_100_megapixels_costs_what_an_8_bit_one_does(tmp_path):
    # A 200 kB 16-bit PNG of 9999x9999 took 2.2 GB at its peak (two float64 copies), against 1.07 GB for the
    # 8-bit RGB one of the same size. Decoding now holds the decoded pixels and at most about 70 MB more (README,
    # "Handled inputs"): the 16-bit file's are half the RGB's, so the command costs no more.
    deep = explain_peak(huge_png(tmp_path / "deep.png", "I;16"))
    plain = explain_peak(huge_png(tmp_path / "plain.png", "RGB"))
    assert deep <= plain + 64, (deep, plain)


def test_a_data_image_swapped_for_a_link_after_its_check_is_not_read(monkeypatch, tmp_path, fairface):
    data = folder(tmp_path / "data", fairface)
    outside = tmp_path / "secret.jpg"
    shutil.copyfile(fairface / "val" / "10.jpg", outside)
    monkeypatch.setenv("FAIRCAM_DATA", str(data))
    at = run("pages/1_Explore.py")  # the label rows are checked, the grid drawn
    assert not at.exception, [e.value for e in at.exception]
    # Someone who can write the folder swaps a checked image for a link to a file beside it.
    (data / "val" / "1.jpg").unlink()
    (data / "val" / "1.jpg").symlink_to(outside)
    at.button(key="pickval/1.jpg").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [m.value for m in at.markdown if "The model says" in m.value]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "outside the data folder" in errors[0], errors


@pytest.mark.parametrize("swapped", ["val/1.jpg", "val"])
def test_a_data_image_swapped_for_a_link_while_it_is_read_is_not_followed(monkeypatch, tmp_path, fairface, swapped):
    # The swap lands between the check of where the name leads and the open: the open follows no link.
    data = folder(tmp_path / "data", fairface)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(data / "val", elsewhere)
    checked = fairface_module._inside

    def swap_after_check(root, file):
        name = checked(root, file)
        moved = data / swapped
        (shutil.rmtree if moved.is_dir() else os.unlink)(moved)
        moved.symlink_to(elsewhere / "1.jpg" if swapped.endswith(".jpg") else elsewhere)
        return name

    monkeypatch.setattr(fairface_module, "_inside", swap_after_check)
    with pytest.raises(ImageError) as info:
        read_data_image(data, "val/1.jpg")
    assert "Cannot read" in str(info.value) and "\n" not in str(info.value)
