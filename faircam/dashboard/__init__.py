"""The dashboard's Streamlit glue: what the pages share (`ui`) and how they choose a face (`image_source`).

The only part of `faircam` that imports Streamlit; the library below it never imports this package.
"""
