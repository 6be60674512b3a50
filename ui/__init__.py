"""The page's Streamlit parts (``app.py`` lays them out): :mod:`ui.controls` (the sidebar and
the link), :mod:`ui.compute` (cached calls into the library), :mod:`ui.sections` (what each
image's analysis shows). Only the page imports them; the library never imports Streamlit."""
