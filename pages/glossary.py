"""Glossary: what the terms the pages use mean, in one list."""
import streamlit as st

from ui import frame
from ui.glossary import TERMS

frame.start("Glossary", "The terms the pages use, in plain words. Each page also lists its own under “Terms on this "
                        "page”.")

for name in sorted(TERMS, key=str.casefold):
    st.markdown(f"**{name}**: {TERMS[name]}")
