"""CPrune: explore neuron-similarity graphs, prune by eigenvector centrality, fine-tune.

Run with `make run` (or `streamlit run app.py`). Streamlit first imports this file as a module and finds
``app``, an st.App whose start-up (ui/startup.py) imports torch and builds the default model in the server
process before anyone visits; each visitor's session then runs this file as its script (as "__main__").
The pages are listed in ui/navigation.py.
"""
import streamlit as st

if __name__ == "__main__":  # a visitor's script run
    from ui import navigation, sidebar, state

    st.set_page_config(page_title="CPrune: centrality-based pruning", layout="wide")
    page = st.navigation(navigation.st_pages())
    state.init()
    sidebar.render()
    state.write_url()
    page.run()
else:  # `streamlit run app.py` imports the file to find its server
    from ui.startup import lifespan

    app = st.App(__file__, lifespan=lifespan)
