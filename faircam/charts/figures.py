"""Pictures of explanations: CAM overlays, the raw maps, their colour bar and the side-by-side figure of
the maps (no torch import)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from faircam.audit.groups import label
from faircam.tasks import TASKS
from faircam.wording import CHANCE, FOCUS_SCORE

if TYPE_CHECKING:
    from faircam.vision.explain import Explanation

TILE = 224


def heat(cam: np.ndarray) -> np.ndarray:
    """A map of values in 0..1 in the jet colours every map is drawn in (0 blue, 1 red), as RGB."""
    return cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * cam), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, cam: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """The CAM as a jet heat map over the RGB image.

    pytorch-grad-cam's `show_cam_on_image` blend (a test checks they are equal), written out
    because that module imports torch, and pages that show stored maps must not.
    """
    heat_map = heat(cam)
    image_weight = 1 - weight  # the library's parametrisation, kept so the floats match exactly
    blend = (1 - image_weight) * (heat_map.astype(np.float32) / 255) + image_weight * (image.astype(np.float32) / 255)
    return np.uint8(255 * blend / blend.max())


# Where a view reaches beyond the photo it is drawn light grey with dark diagonal lines, so nobody
# takes the filler for part of the picture (or a map's heat there for something the photo holds).
HATCH_GREY, HATCH_LINE, HATCH_SPACING = 200, 120, 6


def hatch_invalid(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """`image` with its invalid pixels (False in `valid`, resized to the image's size) hatched."""
    height, width = image.shape[:2]
    valid = np.asarray(valid, dtype=bool)
    if valid.all():
        return image
    if valid.shape != (height, width):
        valid = cv2.resize(valid.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    rows, columns = np.indices((height, width))
    pattern = np.where((rows + columns) % HATCH_SPACING == 0, HATCH_LINE, HATCH_GREY).astype(np.uint8)
    out = image.copy()
    out[~valid] = pattern[~valid][:, None]
    return out


def map_overlay(explanation: Explanation, method: str) -> np.ndarray:
    """One method's map over the view, with the area beyond the photo hatched."""
    view = explanation.view
    return hatch_invalid(overlay(view.image, explanation.maps[method]), view.valid)


# The model's input is drawn at least this wide, each of its dots a visible square: a browser would smooth it.
PIXELATED_SIDE = 480


def model_input(explanation: Explanation) -> np.ndarray:
    """The picture the model gets (the view at its input size, the area beyond the photo hatched), enlarged
    with each of its dots kept a square, so it looks as coarse as it is."""
    view = explanation.view
    factor = max(1, -(-PIXELATED_SIDE // max(view.image.shape[:2])))
    hatched = hatch_invalid(view.image, view.valid)
    return np.repeat(np.repeat(hatched, factor, axis=0), factor, axis=1)


def raw_map(explanation: Explanation, method: str) -> np.ndarray:
    """One method's map alone, in its colours, without the photo under it (the area beyond the photo hatched)."""
    view = explanation.view
    return hatch_invalid(heat(explanation.maps[method]), view.valid)


def colour_bar(width: int = 300, height: int = 14) -> np.ndarray:
    """The maps' colour scale as a horizontal bar, 0 (blue) to 1 (red), its ends and middle marked.

    Every map is scaled to 0..1 on its own image, so the bar reads the same for each."""
    ramp = heat(np.tile(np.linspace(0, 1, width), (height, 1)))
    margin, text = 8, 20
    canvas = Image.new("RGB", (width + 2 * margin, height + text + 4), "white")
    canvas.paste(Image.fromarray(ramp), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    font = _font(15)
    for value, anchor in ((0, "la"), (0.5, "ma"), (1, "ra")):
        x = margin + value * (width - 1)
        draw.line([(x, height), (x, height + 3)], fill="black")
        draw.text((x, height + 4), f"{value:g}", fill="black", font=font, anchor=anchor)
    return np.asarray(canvas)


# Views smaller than this (dlib's 32-pixel chip) are enlarged before drawing, so the marks stay
# thin next to the face instead of covering it.
MIN_DRAW_SIDE = 160


def draw_face(image: np.ndarray, explanation: Explanation) -> np.ndarray:
    """The view with its face box and five landmarks drawn, to show what the focus score used, and
    the area beyond the photo hatched."""
    face = explanation.view.face
    factor = max(1, -(-MIN_DRAW_SIDE // max(image.shape[:2])))
    out = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR) if factor > 1 else image.copy()
    out = hatch_invalid(out, explanation.view.valid)
    if face is None:
        return out
    x1, y1, x2, y2 = (int(round(v * factor)) for v in face.box)
    cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 255), 1)
    for x, y in face.landmarks:
        cv2.circle(out, (int(round(x * factor)), int(round(y * factor))), 2, (0, 255, 0), -1)
    return out


# The whole photo of several faces is shown at most this wide or tall.
WHOLE_PHOTO_SIDE = 720
CHOSEN_COLOUR, OTHER_COLOUR = (255, 120, 0), (255, 255, 255)


def numbered_faces(image: np.ndarray, boxes: list[np.ndarray], chosen: int) -> np.ndarray:
    """The whole photo with each face's box (x1, y1, x2, y2, in the photo's pixels) numbered from 1, as the face
    selector numbers them; the chosen face (an index from 0) in orange and thicker."""
    factor = min(1.0, WHOLE_PHOTO_SIDE / max(image.shape[:2]))
    out = Image.fromarray(cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
                          if factor < 1 else image.copy())
    draw = ImageDraw.Draw(out)
    font = _font(max(14, round(max(out.size) / 30)))
    for i, box in enumerate(boxes):
        x1, y1, x2, y2 = (float(v) * factor for v in box)
        colour = CHOSEN_COLOUR if i == chosen else OTHER_COLOUR
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=4 if i == chosen else 2)
        draw.text((x1 + 4, max(0.0, y1 - 2)), str(i + 1), fill=colour, font=font, anchor="lb" if y1 > 20 else "lt",
                  stroke_width=2, stroke_fill="black")
    return np.asarray(out)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


def explanation_figure(explanation: Explanation) -> Image.Image:
    """The view and its CAM overlays side by side, with prediction and focus scores."""
    view = explanation.view
    tiles = [("input", draw_face(view.image, explanation), "")]
    for method in explanation.maps:
        focus = explanation.focus[method]
        caption = f"{FOCUS_SCORE} {focus['face']:.0%} ({CHANCE} {explanation.chance['face']:.0%})"
        tiles.append((method, map_overlay(explanation, method), caption))
    header, footer = 34, 26
    canvas = Image.new("RGB", (TILE * len(tiles), TILE + header + footer + 24), "white")
    draw = ImageDraw.Draw(canvas)
    title = f"{TASKS[explanation.task].title.capitalize()}: {label(explanation.label)} ({explanation.probability:.0%})"
    if explanation.target and explanation.target != explanation.label:
        title += f"  ·  maps explain {label(explanation.target)}"
    if view.message:
        title += f"  ·  {view.message}"
    draw.text((8, 6), title, fill="black", font=_font(16))
    for i, (name, tile, caption) in enumerate(tiles):
        image = Image.fromarray(tile).resize((TILE, TILE), Image.Resampling.BILINEAR)
        canvas.paste(image, (i * TILE, header))
        draw.text((i * TILE + 6, header + TILE + 4), name, fill="black", font=_font(14))
        draw.text((i * TILE + 6, header + TILE + 24), caption, fill="dimgray", font=_font(12))
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
