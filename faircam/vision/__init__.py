"""The vision pipeline for one image: face detection, the crop and the blur, CAMs, focus scores, and the
network's insides."""
