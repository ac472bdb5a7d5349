"""faircam's dashboard: `streamlit run app.py` (or `bash run.sh app`). Routes to the pages."""

import streamlit as st

from faircam.config import preload_model
from faircam.dashboard import ui

st.navigation(
    [
        st.Page("pages/0_Home.py", title="Home", icon="🏠", default=True),
        st.Page("pages/1_Explore.py", title="Explore", icon="🔍", url_path="Explore"),
        st.Page("pages/2_Evaluation.py", title="Evaluation", icon="📊", url_path="Evaluation"),
        st.Page("pages/4_Fairness.py", title="Fairness", icon="⚖️", url_path="Fairness"),
        st.Page("pages/5_Attention.py", title="Attention", icon="🎯", url_path="Attention"),
        st.Page("pages/6_Faithfulness.py", title="Faithfulness", icon="🧪", url_path="Faithfulness"),
        st.Page("pages/7_Gallery.py", title="Gallery", icon="🖼️", url_path="Gallery"),
        st.Page("pages/11_Failures.py", title="Where does it fail?", icon="🔦", url_path="Failures"),
        st.Page("pages/8_Inside.py", title="Inside the network", icon="🧠", url_path="Inside"),
        st.Page("pages/9_Compare.py", title="Compare models", icon="🆚", url_path="Compare"),
        st.Page("pages/13_Audit_a_model.py", title="Audit a model", icon="🧰", url_path="Audit_a_model"),
        st.Page("pages/10_Classroom.py", title="Classroom", icon="🎓", url_path="Classroom"),
        st.Page("pages/3_About.py", title="About", icon="ℹ️", url_path="About"),
        st.Page("pages/12_Glossary.py", title="Glossary", icon="📖", url_path="Glossary"),
    ]
).run()
# After the first page has run, not before: loading torch would slow that page's own work.
if preload_model():
    ui.warm_up()
