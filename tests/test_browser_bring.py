"""Bringing a model in headless Chromium: on "Audit a model", upload a zipped Hugging Face folder (a tiny ViT the
test builds) and a table of answers through the page's file inputs, check the answers, run the background
evaluation, and see both audits on the Evaluation page. Uses the server and browser fixtures of `test_browser`,
with a server of its own whose store, registry and data the test chooses."""

from __future__ import annotations

import pandas as pd
import pytest
from test_browser import _no_exception, _serve, _settle, browser, page, shots  # noqa: F401 (fixtures)
from test_model_kinds import _vit
from test_model_store import zipped

pytestmark = pytest.mark.browser


@pytest.fixture
def served(tmp_path, fairface):
    yield from _serve({"FAIRCAM_STORE": str(tmp_path / "store"), "FAIRCAM_REGISTRY": str(tmp_path / "r.json"),
                       "FAIRCAM_DATA": str(fairface), "FAIRCAM_AUDIT_FACES": "14"})


def _install(page, path) -> None:  # noqa: F811
    page.locator("[data-testid='stFileUploader'] input[type=file]").first.set_input_files(str(path))
    _settle(page)
    page.get_by_role("button", name="Install", exact=True).click()
    _settle(page)
    page.get_by_text(f"Installed {path.stem}.").wait_for(timeout=120_000)


def test_bring_a_zip_and_a_table_then_audit_them(served, page, shots, tmp_path, val_split):  # noqa: F811
    archive = tmp_path / "tiny-vit.zip"
    archive.write_bytes(zipped(_vit(tmp_path / "vit", ["Woman", "Man"])))
    rows = val_split.rows.head(40)
    table = tmp_path / "vendor-api.csv"
    pd.DataFrame({"file": rows["file"], "pred_gender": rows["gender"].str.lower()}).to_csv(table, index=False)

    page.goto(f"{served}/Audit_a_model")
    _settle(page)
    _install(page, archive)
    body = page.inner_text("body")
    assert "Woman → Female, Man → Male" in body and "vit.layers.1.layernorm_before" in body
    page.get_by_role("button", name="Show its answers").click()
    _settle(page)
    assert page.get_by_text("says Woman → Female").count() + page.get_by_text("says Man → Male").count() == 14
    page.get_by_role("button", name="Evaluate", exact=True).click()
    # The fragment polls the job every 2 s: its bar, then the end.
    page.get_by_text("Evaluated on 14 faces").wait_for(timeout=300_000)
    _no_exception(page)
    page.screenshot(path=shots / "audit-a-model.png", full_page=True)

    page.get_by_text("A table of answers (CSV)").click()
    _settle(page)
    _install(page, table)
    page.get_by_text("audited as soon as it is installed").wait_for()

    for name, images in (("tiny-vit", 14), ("vendor-api", 40)):
        page.goto(f"{served}/Evaluation?model={name}")
        _settle(page)
        page.get_by_text(f"Model {name} on {images} images").wait_for(timeout=120_000)
        _no_exception(page)
    page.screenshot(path=shots / "audit-a-model-evaluation.png", full_page=True)


def test_bring_a_state_dict_larger_than_a_photo(served, page, tmp_path):  # noqa: F811
    """A ResNet-18 state dict (about 45 MB, above the 20 MB a photo may have) with its architecture picked from
    torchvision's list: the server takes it and the page installs it."""
    from safetensors.torch import save_file
    from test_model_kinds import _resnet

    weights = tmp_path / "resnet-weights.safetensors"
    save_file(_resnet(2).state_dict(), weights)
    assert weights.stat().st_size > 40 << 20
    page.goto(f"{served}/Audit_a_model")
    _settle(page)
    page.get_by_text("A state dict and its architecture").click()
    _settle(page)
    page.locator("[data-testid='stSelectbox']").filter(has_text="Architecture").click()
    page.keyboard.type("resnet18")
    page.keyboard.press("Enter")
    _settle(page)
    _install(page, weights)
    body = page.inner_text("body")
    assert "female → Female, male → Male" in body and "torchvision resnet18" in body and "layer4" in body
    _no_exception(page)
