"""Record face-api.js's own outputs on real FairFace faces, for tests/test_models.py.

    (cd tools/faceapi && npm ci) && python tools/record_faceapi_reference.py

Cuts out one val face per race x gender the way faircam feeds the face-api model (MTCNN, then
`make_view` with the model's alignment), runs the original network in node (TF.js CPU backend,
tools/faceapi/record_reference.mjs) and writes tests/data/faceapi_reference.json: per face the
file, MTCNN's box and landmarks, the sha256 of the 112x112 uint8 input, and TF.js's outputs. No
pixels are stored: the test rebuilds the input from the FairFace image and the landmarks.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

import torch

from faircam.config import PROJECT_ROOT, SHARED_FAIRFACE
from faircam.data.fairface import load_split, read_data_image
from faircam.models.registry import load_model
from faircam.vision.preprocess import FaceDetector, make_view

OUT = PROJECT_ROOT / "tests" / "data" / "faceapi_reference.json"


def main() -> None:
    torch.set_num_threads(1)
    model = load_model("face-api")
    detector = FaceDetector()
    rows = load_split(SHARED_FAIRFACE, "val").rows.groupby(["race", "gender"], observed=True).head(1)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = []
        for _, row in rows.iterrows():
            image = read_data_image(SHARED_FAIRFACE, row["file"])
            faces = detector.detect(image)
            if not faces:
                continue
            view = make_view(image, model.input_size, detector, crop=False, blur=False, faces=faces[:1],
                             alignment=model.alignment)
            (Path(tmp) / f"{len(inputs)}.rgb").write_bytes(view.image.tobytes())
            inputs.append({"file": row["file"], "race": row["race"], "gender": row["gender"],
                           "box": faces[0].box.tolist(), "landmarks": faces[0].landmarks.tolist(),
                           "input_sha256": hashlib.sha256(view.image.tobytes()).hexdigest()})
        (Path(tmp) / "inputs.json").write_text(json.dumps(inputs))
        script = PROJECT_ROOT / "tools" / "faceapi" / "record_reference.mjs"
        recorded = Path(tmp) / "outputs.json"
        subprocess.run(["node", str(script), tmp, str(recorded)], check=True, cwd=script.parent)
        reference = json.loads(recorded.read_text())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"{OUT}: {len(reference['results'])} faces")


if __name__ == "__main__":
    main()
