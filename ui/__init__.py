"""Streamlit helpers shared by the pages: state, sidebar, caches, charts, background runs.

Every computation is a call into cprune_core; these modules only hold state, cache results
and turn them into widgets and figures.
"""
