"""CPrune: explore neuron-similarity graphs, prune by eigenvector centrality, fine-tune.

Run with `make run` (or `streamlit run app.py`). The pages are listed in ui/navigation.py.
"""
import streamlit as st

from ui import navigation, sidebar, state

st.set_page_config(page_title="CPrune: centrality-based pruning", layout="wide")

page = st.navigation(navigation.st_pages())
state.init()
sidebar.render()
state.write_url()
page.run()
