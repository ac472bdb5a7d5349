"""Audit a model: bring your own (a zipped Hugging Face folder, a state dict, an ONNX file, or a table of answers),
check what faircam recognised and its answers on a few faces, and evaluate it in the background. The store, the
checks and the jobs are faircam's (`faircam.models.store`, `faircam.evaluation.jobs`); this page only asks and
shows."""

import streamlit as st

from faircam.config import audit_faces, max_model_mb, settings
from faircam.dashboard import ui
from faircam.data.fairface import GENDERS, RACES
from faircam.errors import KNOWN_ERRORS
from faircam.evaluation import jobs
from faircam.evaluation.imported import EXAMPLE, parse_mapping
from faircam.models import store
from faircam.models.kinds import KINDS, layer_label
from faircam.tasks import TASKS
from faircam.text import md

ui.page_setup("Audit a model", "🧰")
st.caption("Bring the face classifier you want to audit. faircam checks what it recognised, shows its answers on a "
           "few faces of each group before anything runs, then evaluates it on FairFace's validation faces in the "
           "background. Once evaluated it is in the sidebar's model selector: every page audits it, Compare "
           "included. Models and their evaluations stay on this server until removed here.")

ZIP, WEIGHTS, ONNX, ANSWERS = ("A Hugging Face model (a zip of its folder)", "A state dict and its architecture",
                               "An ONNX file and its description", "A table of answers (CSV)")
SHOWN = "audit_model"  # the brought model shown below: the one installed last in this session, or chosen

st.markdown("## Bring a model")
what = st.radio("What do you have?", [ZIP, WEIGHTS, ONNX, ANSWERS], key="audit_what")
limit = dict(max_upload_size=max_model_mb())
spec = None
description = None
if what == ZIP:
    st.caption("The folder `save_pretrained` writes: `config.json` (with `id2label`), `*.safetensors`, "
               "`preprocessor_config.json`. Pickled `.bin` weights and models that need their own code are refused.")
    upload = st.file_uploader("The zipped folder", type=["zip"], key="audit_zip", **limit)
elif what == WEIGHTS:
    st.caption("Weights as `.safetensors`, or `.pt` / `.pth` (read as tensors only, never unpickled).")
    upload = st.file_uploader("The state dict", type=["safetensors", "pt", "pth"], key="audit_state", **limit)
    c1, c2 = st.columns(2)
    fmt = c1.radio("Library", ["torchvision", "timm"], horizontal=True, key="audit_fmt")
    archs = store.architectures(fmt)
    arch = c2.selectbox("Architecture", archs, index=archs.index("resnet50") if "resnet50" in archs else 0,
                        key=f"audit_arch_{fmt}")
    classes = st.text_input("Its class names, in the order of its outputs", "female, male", key="audit_classes",
                            help="Mapped onto FairFace's by name (woman, F, Male ♂ …), never by position. One name "
                                 "is a sigmoid output: `male` means p(male).")
    c1, c2, c3 = st.columns(3)
    size = c1.number_input("Input size (pixels)", 16, 1024, 224, key="audit_size")
    norm = c2.radio("Normalisation", ["ImageNet's", "0.5 / 0.5"], key="audit_norm")
    view = c3.radio("Trained on", ["whole", "crop"], key="audit_view",
                    format_func=lambda v: {"whole": "whole FairFace-style images", "crop": "aligned face crops"}[v])
    half = [0.5] * 3
    try:
        spec = store.weights_spec(fmt, arch, classes.split(","), input_size=int(size),
                                  mean=None if norm == "ImageNet's" else half,
                                  std=None if norm == "ImageNet's" else half,
                                  view=view)
    except KNOWN_ERRORS as exc:
        st.error(md(exc))
elif what == ONNX:
    st.caption("The graph as one `.onnx` file, and its `faircam-model.json` (format `onnx`, its outputs' classes, "
               "input size, mean, std, view: see the README's \"Bring your own model\").")
    upload = st.file_uploader("The ONNX file", type=["onnx"], key="audit_onnx", **limit)
    description = st.file_uploader("Its faircam-model.json", type=["json"], key="audit_json")
else:
    st.caption("A CSV with `file` (as FairFace's labels name it, e.g. `val/12.jpg`) and `pred_gender` (and "
               "`pred_race`, `pred_age`, `prob_<task>` where you have them). It has no maps.")
    upload = st.file_uploader("The table", type=["csv"], key="audit_csv", **limit)
    mapping = st.text_input("Its mapping (optional)", key="audit_mapping", placeholder=EXAMPLE,
                            help="Where its answers are coarser than FairFace's classes (five races: african, asian, "
                                 "caucasian, hispanic, indian), faircam proposes which FairFace classes each stands "
                                 "for and shows it once installed; map a FairFace class onto one of its answers (or "
                                 "null) here to change that.")
default = upload.name.rsplit(".", 1)[0][:64] if upload is not None else ""
name = st.text_input("Its name on the pages", default, key=f"audit_name_{default}")
ready = upload is not None and name.strip() and (what != ONNX or description is not None) \
    and (what != WEIGHTS or spec is not None)
if st.button("Install", type="primary", disabled=not ready, key="audit_install"):
    try:
        with st.spinner("Checking and loading the model…"):
            if what == ZIP:
                installed = store.install_archive(name, upload.getvalue(), upload.name)
            elif what == ANSWERS:
                given = parse_mapping(mapping, "Its mapping") if mapping.strip() else None
                installed, counts = store.install_answers(name, upload.getvalue(), upload.name, mapping=given)
                if counts["not_in_data"]:
                    st.warning(f"{counts['not_in_data']} of its files are not among FairFace's validation faces and "
                               f"are not counted (the first: {md(', '.join(counts['not_in_data_files']))}).")
            else:
                if what == ONNX:
                    spec = store.read_description(description.getvalue(), description.name)
                installed = store.install_weights(name, upload.getvalue(), upload.name, spec)
    except KNOWN_ERRORS as exc:
        st.error(f"**Not installed.** {md(exc)}")
    else:
        st.session_state[SHOWN] = installed.name
        st.success(f"Installed **{md(installed.name)}**.")

brought = {m.name: m for m in store.installed()}
if not brought:
    st.stop()

st.markdown("## Your models on this server")
names = list(brought)
if st.session_state.get(SHOWN) not in names:  # none yet, or removed in another session
    st.session_state[SHOWN] = ui.selected_model() if ui.selected_model() in names else names[-1]
chosen = st.selectbox("Model", names, key=SHOWN)
model = brought[chosen]
facts = model.facts
recognised = {
    "kind": md(KINDS[model.kind].title if model.kind in KINDS else model.kind),
    "from": f"{md(model.source)} (installed {md(model.installed)})",
    "tasks": ", ".join(TASKS[t].title for t in facts.get("tasks", {}) if t in TASKS),
    "classes → FairFace's": md("; ".join(facts.get("label_mapping", {}).values()) or "by name, as given"),
}
if model.kind != store.ANSWERS:
    recognised |= {"architecture": md(facts["arch"]),
                   "input": md(f"{facts['input_size']}×{facts['input_size']} RGB, mean {facts['mean']}, "
                               f"std {facts['std']}"),
                   "view": "aligned face crops" if facts["view"] == "crop" else "whole FairFace-style images",
                   "CAM layer": md(facts["cam_layer"], code=True) if facts["cam_layer"] else
                   "none to choose: it runs as a black box, with occlusion maps"}
st.markdown("\n".join(f"- **{key}:** {value}" for key, value in recognised.items()))

layers = store.cam_layers(model) if facts.get("cam_layer") else []
if layers:
    labels = {la["name"]: layer_label(la) + (" (faircam's choice)" if la["default"] else "") for la in layers}
    current = facts["cam_layer"]
    picked = st.selectbox("The layer its maps explain", list(labels)[::-1], index=len(labels) - 1 - list(labels).index(
        current), format_func=labels.get, key=f"audit_layer_{model.name}@{model.installed}")
    st.caption("Earlier layers give a finer grid but are less specific to the class the maps explain; faircam's "
               "choice is the last layer with a grid (a transformer's: the input of its last block).")
    if picked != current:
        state = jobs.job(model.name)
        evaluated = store.evaluated(model)
        if state is not None and state.state in ("queued", "running"):
            st.warning("It is being evaluated: cancel its evaluation before choosing another layer.")
        else:
            if evaluated:
                st.warning(f"Its evaluation explains {md(current, code=True)}: using {md(picked, code=True)} removes "
                           "it and evaluates it again on the same faces, so no page shows maps of one layer beside "
                           "numbers of another.")
            if not evaluated or st.button(f"Use {picked} and evaluate again", key=f"audit_relayer_{model.name}"):
                try:
                    faces = state.faces if state is not None else audit_faces()
                    store.choose_cam_layer(model.name, picked)
                    if evaluated:
                        jobs.submit(model.name, faces)
                except KNOWN_ERRORS as exc:
                    st.error(md(exc))
                else:
                    st.rerun()

data = settings().data_dir
if model.kind == store.ANSWERS:
    st.info("A table of answers is audited as soon as it is installed: no model runs, so it has no maps.")
    ui.page_link("pages/2_Evaluation.py", "See its audit on Evaluation", "📊", model=model.name)
elif data is None:
    st.warning("This server has no FairFace folder to evaluate on: set `FAIRCAM_DATA`.")
else:
    st.markdown("### Its answers on a few faces")
    st.caption("One validation face of each race × gender group, with the model's own answer and the FairFace class "
               "it was mapped to. If the answers look swapped (most women called men), the class names are in the "
               "wrong order.")
    if st.button("Show its answers", key=f"audit_preview_{model.name}"):
        try:
            with st.spinner("Running the model on 14 faces…"):
                shown = store.preview(ui.pipeline(model.name), data)
        except KNOWN_ERRORS as exc:
            st.error(f"**The model does not run.** {md(exc)}")
        else:
            right = shown["right"].mean()
            st.caption(f"Right on {shown['right'].sum()} of {len(shown)} faces ({right:.0%}).")
            for gender in GENDERS:
                row = shown[shown["gender"] == gender]
                st.markdown(f"**{gender}**")
                columns = st.columns(len(RACES))
                for column, (_, face) in zip(columns, row.iterrows()):
                    image = ui.thumbnail(data, face["file"])
                    if image is not None:
                        column.image(image, width="stretch")
                    column.caption(f"{md(face['race'])}: says **{md(face['said'])}** → {md(face['answer'])} "
                                   f"({face['probability']:.0%}) {'✓' if face['right'] else '✗'}")

    st.markdown("### Evaluate it")
    try:
        default_faces = audit_faces()
    except KNOWN_ERRORS as exc:
        st.error(md(exc))
        st.stop()
    faces = st.radio("Faces", [default_faces, None], horizontal=True, key=f"audit_faces_{model.name}",
                     format_func=lambda n: f"{n} faces, stratified by race × gender" if n else
                     "every validation face (slow on a CPU)")

    @st.fragment(run_every=2)
    def progress() -> None:
        job = jobs.job(model.name)
        active = job is not None and job.state in ("queued", "running")
        if job is None or not active:
            label = "Resume the evaluation" if job is not None and job.state in ("cancelled", "stopped") \
                else "Evaluate"
            if st.button(label, type="primary", key=f"audit_run_{model.name}"):
                job = jobs.submit(model.name, faces)
                active = True
        if job is None:
            return
        if job.state == "queued":
            st.info(f"Queued: {job.ahead} evaluation{'s' if job.ahead != 1 else ''} ahead of it on this server "
                    "(one runs at a time).")
        elif job.state == "running":
            eta = f" · about {max(1, round(job.eta_s / 60))} min left" if job.eta_s else ""
            st.progress(job.done / job.total if job.total else 0.0,
                        text=md(job.message) if job.message else f"{job.done:,} of {job.total:,} faces{eta}")
        elif job.state == "done":
            st.success(f"Evaluated on {job.done:,} faces: choose **{md(model.name)}** in the sidebar, or compare it.")
            ui.page_link("pages/2_Evaluation.py", "See its audit on Evaluation", "📊", model=model.name)
        elif job.state == "failed":
            st.error(f"**The evaluation failed.** {md(job.message)}")
        else:
            st.warning(f"{md(job.message)} ({job.done:,} of {job.total:,} faces done)")
        if active and st.button("Cancel", key=f"audit_cancel_{model.name}"):
            jobs.cancel(model.name)

    progress()

st.markdown("### Remove it")
state = jobs.job(model.name)
busy = state is not None and state.state in ("queued", "running")
if st.button(f"Remove {md(model.name)} and its evaluation", key=f"audit_remove_{model.name}", disabled=busy,
             help="Cancel its evaluation first." if busy else None):
    try:
        store.remove(model.name)
    except KNOWN_ERRORS as exc:
        st.error(md(exc))
    else:
        st.session_state.pop(SHOWN, None)
        st.rerun()
