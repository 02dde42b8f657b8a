"""CPrune: explore neuron-similarity graphs, prune by eigenvector centrality, fine-tune.

Run with `make run` (or `streamlit run app.py`). Streamlit first imports this file as a module and finds
``app``, an st.App whose start-up (ui/startup.py) imports torch and builds the default model in the server
process before anyone visits, and whose middleware (``ui.startup.Guards``) hands out visitor cookies and bounds
the upload endpoint's memory; each visitor's session then runs this file as its script (as "__main__").
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
    from starlette.middleware import Middleware

    from ui.startup import Guards, lifespan

    app = st.App(__file__, lifespan=lifespan, middleware=[Middleware(Guards)])
