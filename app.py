"""CPrune: explore neuron-similarity graphs, prune by eigenvector centrality, fine-tune.

Run with `make run` or `streamlit run app.py`.
"""
import streamlit as st

from ui import sidebar, state

# No page icons: Streamlit fetches Material icons for the favicon from Google's servers.
st.set_page_config(page_title="CPrune: centrality-based pruning", layout="wide")

PAGES = [
    st.Page("app_pages/explorer.py", title="Graph explorer", default=True),  # served at /
    st.Page("app_pages/prune.py", title="Prune", url_path="prune"),
    st.Page("app_pages/layerwise.py", title="Layer-wise centrality", url_path="layerwise"),
    st.Page("app_pages/finetune.py", title="Fine-tune", url_path="finetune"),
    st.Page("app_pages/results.py", title="Results", url_path="results"),
]

page = st.navigation(PAGES)
state.init()
sidebar.render()
state.write_url()
page.run()
