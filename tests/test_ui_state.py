"""ui/state.py directly: slider bounds, URL values parsed or rejected, widgets bound to shared values.

Functions that need st.session_state run as tiny scripts under streamlit.testing.v1.AppTest.
"""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from cprune_core import FinetuneConfig, Range
from ui import state


@pytest.mark.parametrize("valid, step, bounds", [
    (Range(0.0, 1.0, high_open=True), 0.01, (0.0, 0.99)),  # tau: 1 itself is not valid
    (Range(0.0, 1.0, low_open=True), 0.05, (0.05, 1.0)),  # keep: 0 itself is not valid
    (Range(0.0, 1.0, low_open=True, high_open=True), 0.1, (0.1, 0.9)),
    (Range(2.0, 8.0), 0.5, (2.0, 8.0)),
    (Range(0.0, 0.3, high_open=True), 0.1, (0.0, 0.2)),  # rounded: not 0.19999999999999998
])
def test_slider_bounds_move_an_open_end_in_by_one_step(valid, step, bounds):
    assert state.slider_bounds(valid, step) == bounds


def test_the_shared_values_and_slider_ranges_come_from_the_config():
    defaults, options = FinetuneConfig(), FinetuneConfig.options()
    assert {name: state.DEFAULTS[name] for name in ("backbone", "tau", "criterion", "keep")} == {
        "backbone": defaults.backbone, "tau": defaults.tau, "criterion": defaults.criterion, "keep": defaults.keep}
    assert state.TAU_RANGE == state.slider_bounds(options["tau"].range, state.TAU_STEP) == (0.0, 0.99)
    assert state.KEEP_RANGE == state.slider_bounds(options["keep"].range, state.KEEP_STEP) == (0.05, 1.0)
    assert state.URL_PARAMS == ("backbone", "layer", "tau", "criterion", "keep")


@pytest.mark.parametrize("name, text, value", [
    ("backbone", "resnet18", "resnet18"), ("criterion", "l1", "l1"), ("tau", "0.25", 0.25), ("tau", "0", 0.0),
    ("tau", "0.333", 0.33), ("keep", "1", 1.0), ("keep", "0.05", 0.05), ("layer", "blocks.1.expand.1", "blocks.1.expand.1"),
])
def test_url_values_are_parsed_as_the_app_uses_them(name, text, value):
    assert state._parse(name, text) == value


@pytest.mark.parametrize("name, text, message", [
    ("backbone", "nope", "unknown backbone 'nope'"), ("criterion", "centrality", "unknown criterion"),
    ("tau", "1", "between 0.0 and 0.99"), ("tau", "-0.1", "between"), ("keep", "0", "between 0.05 and 1.0"),
    ("keep", "nan", "between"), ("tau", "inf", "between"), ("tau", "abc", "must be a number between 0.0 and 0.99"),
    ("tau", "", "a number between"), ("keep", "٠.٥", "a number between"), ("keep", "1e400", "between"),
    ("criterion", "x" * 1000, "unknown criterion 'x{40}'$"),
])
def test_invalid_url_values_are_rejected_with_the_reason(name, text, message):
    with pytest.raises(ValueError, match=message):
        state._parse(name, text)


def shared_state_page() -> None:
    """A page with the shared state and its two sliders; a checkbox hides the tau slider (as another page would)."""
    import streamlit as st

    from ui import state

    state.init()
    if st.checkbox("tau slider", value=True, key="show_tau"):
        state.tau_slider()
    state.keep_slider()
    st.button("keep a third", key="third", on_click=state.set_value, args=("keep", 0.35))
    state.write_url()


def test_the_url_seeds_the_shared_values_once_and_rejected_ones_are_listed():
    at = AppTest.from_function(shared_state_page)
    at.query_params.update(tau="0.3", keep="2", backbone="nope", criterion="l2", layer="stem.1")
    at.run()
    assert not at.exception
    assert {name: at.session_state[name] for name in state.URL_PARAMS} == {
        "backbone": state.DEFAULTS["backbone"], "layer": "stem.1", "tau": 0.3, "criterion": "l2",
        "keep": state.DEFAULTS["keep"]}
    assert at.session_state["url_rejected"] == ["backbone: unknown backbone 'nope'", "keep: keep must be a number "
                                                f"between {state.KEEP_RANGE[0]} and {state.KEEP_RANGE[1]}, got '2'"]
    assert at.query_params["backbone"] == state.DEFAULTS["backbone"]  # the URL now says what is shown
    at.query_params["tau"] = "0.7"  # read on the first run only
    at.run()
    assert at.session_state["tau"] == 0.3


def test_bound_widgets_follow_the_shared_value_and_write_it_to_the_url():
    at = AppTest.from_function(shared_state_page).run()
    assert at.slider(key="widget_tau").value == state.DEFAULTS["tau"]
    assert "layer" not in at.query_params  # empty: the head layer, left out of the link
    at.slider(key="widget_tau").set_value(0.42).run()
    assert at.session_state["tau"] == 0.42 and at.query_params["tau"] == "0.42"

    at.checkbox(key="show_tau").uncheck().run()  # the slider is not drawn (another page) ...
    assert at.session_state["tau"] == 0.42
    at.checkbox(key="show_tau").check().run()  # ... and comes back with the shared value, not its default
    assert at.slider(key="widget_tau").value == 0.42

    at.button(key="third").click().run()  # set_value from a callback: the widget shows it
    assert at.slider(key="widget_keep").value == 0.35 and at.query_params["keep"] == "0.35"


def chooser_page() -> None:
    import streamlit as st

    from ui import state

    state.init()
    st.session_state["was_reset"] = state.ensure_choice("layer", ["a", "b"], "b")
    st.session_state["first_visitor"] = state.visitor()
    st.session_state["chart"] = state.chart_config("my-chart")


def test_ensure_choice_visitor_and_chart_config():
    at = AppTest.from_function(chooser_page)
    at.query_params["layer"] = "zzz"
    at.run()
    assert at.session_state["was_reset"] and at.session_state["layer"] == "b"
    assert at.query_params["layer"] == "b", "the URL shows the value in use at once"
    at.run()
    assert not at.session_state["was_reset"]
    visitor = at.session_state["first_visitor"]  # AppTest sends no cookie: an anonymous id of this session only
    assert visitor.startswith("anonymous-") and int(visitor.removeprefix("anonymous-"), 16) >= 0
    assert len(visitor) == len("anonymous-") + 32 and at.session_state["_visitor"] == visitor
    other = AppTest.from_function(chooser_page).run()
    assert other.session_state["first_visitor"] != visitor, "each session its own private id"
    options = at.session_state["chart"]["toImageButtonOptions"]
    assert (options["filename"], options["format"]) == ("my-chart", "png")
    at.session_state["chart_format"] = "svg"
    at.run()
    assert at.session_state["chart"]["toImageButtonOptions"]["format"] == "svg"
