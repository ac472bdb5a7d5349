"""Classroom: a guided walk through one face, in plain words, for someone who has never written code.

The model runs only for the chosen face, at the steps that show where it looked; for a FairFace face the
answer and the group numbers come from the cached evaluation. The class's own photo works too: its answer
is computed, and no label or group is claimed for it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from faircam import wording
from faircam.audit import classroom, groups
from faircam.audit import explanations as audit
from faircam.config import MAX_UPLOAD_MB, settings
from faircam.dashboard import image_source, ui
from faircam.data.fairface import LABEL_COLUMNS, data_path
from faircam.models import registry
from faircam.tasks import DEFAULT_TASK, TASKS
from faircam.text import md

if TYPE_CHECKING:
    from faircam.vision.preprocess import View

ui.page_setup("Classroom: one face, step by step", "🎓")
STEPS = ("Choose a face", "What the model sees", "The model's answer", "Where it looked", "Change the picture",
         "Is it the same for everyone?", "What this does not tell us")
METHOD = "Grad-CAM"
if ui.selected_task() != DEFAULT_TASK:
    st.info(f"This lesson follows the model's **gender** answer only; its {TASKS[ui.selected_task()].title} "
            "answers are on Explore and the audit pages.")


def changes_overall() -> str:
    """One sentence on how often each change flips the model's answer over the whole evaluation."""
    if not audit.has_views(cache.rows) or METHOD not in cache.methods:
        return ""
    effects = audit.counterfactual_effects(cache.rows, [], METHOD).set_index("view")
    crop, blur = effects.loc["crop"], effects.loc["blur"]
    return (f"\n\nOver the {int(crop['n']):,} test photos where a face was found, cutting out the face alone changed "
            f"**{crop['flip_rate']:.0%}** of the answers and blurring alone **{blur['flip_rate']:.0%}**.")


cache = ui.evaluation_or_stop()
ui.map_kind_note(cache.methods)
if DEFAULT_TASK not in cache.tasks:  # the lesson follows a gender answer
    st.info(ui.lacking(cache, DEFAULT_TASK, "answers"))
    st.stop()
if cache.answers_only:  # the lesson follows a model on a face, its answer and its maps
    st.info(ui.no_maps_line(cache))
    st.stop()
data = settings().data_dir
has_data = data is not None and data.is_dir()
if not has_data:
    st.warning("**The FairFace images are not here.** The lesson's example faces need the FairFace folder: set "
               "`FAIRCAM_DATA` (or run `faircam fetch-fairface`). Your own photo works without it.")


def people(group: pd.Series) -> str:
    """'Black faces labelled female': the group in words, without calling children men or women."""
    return md(f"{groups.label(group['race'])} faces labelled {group['gender'].lower()}")


def words(region: str) -> str:
    return {"rest of face": "the rest of the face (cheeks, forehead, chin)"}.get(region, f"the {region}")


VERDICTS = {
    "clear": "So it looked clearly more at the face than at the rest of the picture.",
    "slight": "So it looked at the face a little more than the face's size alone would explain.",
    "none": "So it did not look at the face more than at anything else: hair, clothes or background mattered "
            "as much.",
}


def attention(focus: dict[str, float], chance: dict[str, float], view: View) -> str:
    said = VERDICTS[classroom.attention_level(focus, chance)]
    if not classroom.landmarks_trusted(view):
        return (f"{said}\n\nThis face is turned away from the camera, so the points that place its eyes, nose and "
                "mouth are unreliable: the lesson does not say which of them got the heat.")
    top = classroom.most_looked_at(focus, chance)
    return (f"{said}\n\nFor its size, **{words(top)}** got the most heat: {focus[top]:.0%} of the heat on "
            f"{chance[top]:.0%} of the picture.")


facts = classroom.model_facts(registry.entries()[ui.selected_model()], ui.checkpoint())
trained_on = f"{facts.train_images:,}" if facts.train_images else "many"


def lesson_face() -> tuple[image_source.Choice, dict | None] | None:
    """The session's image (picked or uploaded here or on another page) and for a FairFace face its cached row;
    None when the lesson cannot use it. An upload is cropped as Explore crops it, at the face chosen there (a
    FairFace face, already a crop, is not: its answer is the evaluation's)."""
    own = image_source.uploaded()
    if own is not None:
        choice = image_source.Choice(None, own, None, crop=image_source.crop_setting(True), blur=False, face=0)
        return image_source.with_chosen_face(choice), None
    chosen = image_source.picked()
    if chosen is None or not has_data or data_path(data, chosen["file"]) is None:
        return None
    row = cache.rows[cache.rows["file"] == chosen["file"]]
    if row.empty:
        return None
    return image_source.Choice(data, None, chosen, crop=False, blur=False, face=0), row.iloc[0].to_dict()


def use_own_photo() -> None:
    file = st.session_state["lesson_upload"]
    if file is not None:
        image_source.use_upload(file.getvalue())
        st.session_state["lesson_step"] = 1


step = st.session_state.setdefault("lesson_step", 0)
st.progress((step + 1) / len(STEPS), text=f"Step {step + 1} of {len(STEPS)}: **{STEPS[step]}**")
face = lesson_face()
choice, picked = face if face is not None else (None, None)

if step == 0:
    st.markdown("A computer program, the **model**, has learnt to guess whether a face is a man's or a woman's "
                f"from {trained_on} example photos. Let's follow it on one face. **Pick one** below: some it gets "
                "right, some wrong (you will find out which).")
    if has_data:
        draw = st.session_state.setdefault("lesson_draw", 0)
        choices = classroom.examples(cache.rows, exists=lambda file: data_path(data, file) is not None, draw=draw)
        columns = st.columns(len(choices))
        for column, (_, row) in zip(columns, choices.iterrows()):
            with column:
                image = ui.thumbnail(data, row["file"])
                if image is not None:
                    st.image(image, width="stretch")
                if st.button("This one", key=f"face-{row['file']}", width="stretch"):
                    image_source.pick({c: row[c] for c in LABEL_COLUMNS})
                    st.session_state["lesson_step"] = 1
                    st.rerun()
        if st.button("🔀 Other faces", help="A fresh set of six: right and wrong answers, for women and men, a "
                                            "hesitant answer and a child."):
            st.session_state["lesson_draw"] = draw + 1
            st.rerun()
    st.file_uploader("…or use your own photo (it stays in this browser session)", key="lesson_upload",
                     type=image_source.UPLOAD_TYPES, on_change=use_own_photo, max_upload_size=MAX_UPLOAD_MB)
    if picked is not None:
        st.caption(f"Current face: {md(picked['file'], code=True)}.")
elif choice is None:
    st.session_state["lesson_step"] = 0
    st.rerun()
else:
    lesson = choice.explain()  # the view every step shows and the answer an upload gets
    if lesson is None or lesson.view.face is None:
        if lesson is not None:
            st.warning("**No face was found in this picture, so the lesson stops here.** The model would still "
                       "answer *Female* or *Male*: it always does, even for a page of homework or a landscape, and "
                       "its answer would mean nothing. Choose one of the lesson's faces, or a photo where a face is "
                       "clearly visible.")
        if st.button("Choose another face", type="primary"):
            st.session_state["lesson_step"] = 0
            st.rerun()
        st.stop()
if step == 1:
    from faircam.charts.figures import model_input

    size = lesson.view.image.shape[0]
    c1, c2 = st.columns([1, 2])
    c1.image(model_input(lesson), caption=f"What the model gets: {size} × {size} dots", width="stretch")
    c2.markdown(
        f"The model does not see a person. It gets a small square picture, **{size} × {size} dots** (pixels), "
        f"and each dot is three numbers: how red, green and blue it is. That is **{size * size * 3:,} "
        "numbers**."
        + ("\n\nThe face was cut out of the photo first, the way the faces the model learnt from were cut."
           if lesson.view.cropped else "")
        + (f"\n\nThe hatched grey ({wording.small_share(lesson.view.invalid_share)} of the square) is not part "
           "of the photo: the photo does not fill the square, and the model gets flat grey there."
           if lesson.view.invalid_share > 0 else "")
        + f"\n\nIt has never seen this person. During training it was shown {trained_on} other faces, "
        "each with a label that people gave it (*Female* or *Male*), and it adjusted itself, millions "
        "of times, to guess those labels well.\n\nNow it has to guess this one."
    )
elif step == 2 and picked is None:
    c1, c2 = st.columns([1, 2])
    c1.image(lesson.view.image, width="stretch")
    c2.markdown(
        f"### The model says **{lesson.label}**, {lesson.probability:.0%} sure.\n\n"
        "Nobody labelled your photo for FairFace, so the app cannot tell whether that is right: you can. "
        + classroom.confidence_words(lesson.probability, None)
        + "\n\nAnd even a label would be a guess: gender is not something a photo shows."
    )
elif step > 1:
    if step == 2:
        right = picked["pred"] == picked["gender"]
        c1, c2 = st.columns([1, 2])
        face_image = ui.thumbnail(data, picked["file"])
        if face_image is None:
            c1.warning(f"{md(picked['file'], code=True)} cannot be read.")
        else:
            c1.image(face_image, width="stretch")
        c2.markdown(
            f"### The model says **{md(picked['pred'])}**, {picked['prob']:.0%} sure.\n\n"
            f"The people who labelled this photo for FairFace said **{md(picked['gender'])}**: the model is "
            f"**{'right ✅' if right else 'wrong ❌'}**.\n\n"
            + classroom.confidence_words(picked["prob"], right)
            + "\n\nAnd the label is itself a guess: the labellers only saw the photo too."
        )
    elif step == 3:
        from faircam.charts.figures import map_overlay, model_input

        focus, chance = lesson.focus[METHOD], lesson.chance
        c1, c2, c3 = st.columns([1, 1, 2])
        c1.image(model_input(lesson), caption="the picture", width="stretch")
        c2.image(map_overlay(lesson, METHOD), caption="the heat map", width="stretch")
        c3.markdown(
            f"The **heat map** colours the parts of the picture that pushed the model towards "
            f"*{lesson.label}*: **red** pushed hard, **blue** hardly at all.\n\n"
            f"**{focus['face']:.0%}** of the heat is on the face: the map's **{wording.FOCUS_SCORE}**. If the "
            f"model had looked everywhere equally, the face would get {chance['face']:.0%}, its share of the "
            f"picture: the **{wording.CHANCE}**. "
            + attention(focus, chance, lesson.view)
            + "\n\nThe map is blurry on purpose: the model's last layer sees the picture as a coarse grid, "
            "so read it as *roughly here*, not as an outline."
        )
    elif step == 4:
        from faircam.charts.figures import map_overlay

        before, after = lesson, replace(choice, crop=True, blur=True).explain()
        if after is not None:
            c1, c2, c3 = st.columns([1, 1, 2])
            c1.image(map_overlay(before, METHOD), width="stretch",
                     caption=f"as it was: {before.label}, {before.probability:.0%} sure")
            c2.image(map_overlay(after, METHOD), width="stretch",
                     caption=f"face cut out and background blurred: {after.label}, {after.probability:.0%} sure")
            changed = before.label != after.label
            c3.markdown(
                "Now we change the picture: we **cut out the face** the way FairFace cut its faces, with the eyes "
                "level, and **blur everything around it**, so hair, clothes and background say less.\n\n"
                + ("The face was already cut out (the model gets it that way, as Explore shows it), so only the "
                   "blur is new." if before.view.cropped else
                   classroom.crop_change(before.view, after.view).words())
                + "\n\n"
                + (f"The answer **changed**, from {before.label} to {after.label}"
                   + ("" if picked is None else
                      f" (now {'right' if after.label == picked['gender'] else 'wrong'})")
                   + ": the new picture (its framing, its turn, its grey filler or the blur) changed what the "
                   "model saw, and one photo cannot tell which of them did it."
                   if changed else
                   f"The answer stayed **{after.label}** ({before.probability:.0%} → {after.probability:.0%} sure)."
                   + (" It became much less sure: what changed in the picture mattered to it."
                      if classroom.lost_confidence(before.probability, after.probability) else ""))
                + f"\n\nThe face now gets **{after.focus[METHOD]['face']:.0%}** of the heat "
                f"(before: {before.focus[METHOD]['face']:.0%})."
                + ("\n\nThe hatched grey area lies beyond the original photo: the model sees flat grey there, and "
                   "it counts for nothing." if after.view.invalid_share > 0 else "")
                + changes_overall()
            )
    elif step == 5:
        by = groups.GROUPINGS["race × gender"]
        frame = groups.GroupFrame(cache.rows, by)
        cells, gap = groups.ranked(frame.by_group), frame.gap("accuracy gap")
        overall = groups.group_table(cache.rows, []).at[0, "accuracy"]
        said = (f"One face is one face. To know whether the model treats people fairly we need **many**: it was "
                f"tested on **{len(cache.rows):,}** FairFace faces, and it was right for **{overall:.0%}** of them.")
        if picked is None:
            said += ("\n\nYour photo has no label and belongs to no group of the test: the app does not guess "
                     "anyone's race or gender. The groups below are FairFace's.")
        else:
            mine = cells.set_index("group").loc[groups.group_label(picked, by)]
            said += (f"\n\nFor **{people(pd.Series(picked))}**, like this one, it was right "
                     f"**{mine['accuracy']:.0%}** of the time, out of **{mine['n']}** faces. With other faces it "
                     f"could plausibly be anywhere from {mine['accuracy_low']:.0%} to {mine['accuracy_high']:.0%}."
                     + (" That is a small group: read its number with care." if mine["small"] else ""))
        st.markdown(said)
        if gap.defined:
            best, worst = gap.highest, gap.lowest
            st.markdown(
                f"The best group: {people(best)}, right for {best['accuracy']:.0%} of {best['n']}. "
                f"The worst: {people(worst)}, right for {worst['accuracy']:.0%} of {worst['n']}. "
                f"That is a gap of **{gap.value * 100:.0f} points**: for every 100 faces, about "
                f"{(1 - worst['accuracy']) * 100:.0f} from the worst group are misclassified against "
                f"{(1 - best['accuracy']) * 100:.0f} from the best. With other faces the gap could plausibly be "
                f"anywhere from {gap.low * 100:.0f} to {gap.high * 100:.0f} points."
            )
        ui.page_link("pages/4_Fairness.py", "See every group on the Fairness page", "⚖️")
    else:
        st.markdown(
            "- **Gender is not visible in a face.** The labels are what other people guessed from the same photo, "
            "and they only allow two answers. The model learnt to copy those guesses.\n"
            "- **A heat map is not a reason.** It shows *where* the model looked, not *why* that made it say what "
            "it said.\n"
            "- **One photo proves nothing** about a group; the group numbers come from thousands of faces, and "
            "even they carry uncertainty (the *could be anywhere from … to …*).\n"
            "- **Other photos, other results.** These faces are tightly framed photos from the internet; "
            "holiday snaps, profiles or other cameras may go worse.\n"
            "- **Should such a model be used at all?** That is a question for people, not for the numbers."
        )
        ui.page_link("pages/7_Gallery.py", "Look through the model's mistakes", "🖼️")

st.divider()
back, restart, forward = st.columns(3)
if step > 0 and back.button("← Back", width="stretch"):
    st.session_state["lesson_step"] = step - 1
    st.rerun()
if step > 0 and restart.button("Start again", width="stretch"):
    st.session_state["lesson_step"] = 0
    st.rerun()
if 0 < step < len(STEPS) - 1 and forward.button("Next →", type="primary", width="stretch"):
    st.session_state["lesson_step"] = step + 1
    st.rerun()
