"""Reading the graph canvas in a page driven by Playwright, as a person reads it: the numbers above the graph, the
canvas's status attributes, the tooltip of a neuron, and its timings in the page's performance timeline
(ui/components/graph_canvas/view.js says what each is). No hook of the canvas's own: it has none."""
from __future__ import annotations

import re

CANVAS = ".cg-root[data-frame]"
FRAME_ENTRY = "cprune-canvas:frame"  # view.js's User Timing entry of each frame drawn
_TOOLTIP = re.compile(r"neuron (\d+)\ncentrality ([\d.e-]+) \(rank ([\d,]+) of [\d,]+\)\ndegree ([\d,]+)")
_STATUS = """root => ({...root.dataset, stats: Object.fromEntries([...root.querySelectorAll('.cg-stat')]
    .map(cell => [cell.dataset.stat, cell.dataset.value === '' ? null : Number(cell.dataset.value)]))})"""


def status(page) -> dict:
    """The canvas's status (its root's data attributes: tau, frame, source, centrality, selected, held, ...) and
    ``stats``, the numbers shown above the graph (neurons, edges, density, components, largest, isolated)."""
    return page.locator(".cg-root").evaluate(_STATUS)


def wait_shown(page, tau: float, centrality: str = "final") -> dict:
    """The canvas drawn at ``tau`` with its centrality ``centrality`` (final: converged or at its step budget;
    elsewhere: of another tau, while this one's is awaited), and its status."""
    page.locator(f'.cg-root[data-tau="{tau:.2f}"][data-centrality="{centrality}"]').wait_for(timeout=60_000)
    return status(page)


def entries(page, name: str) -> list[dict]:
    """The details of the page's performance entries ``name``, oldest first, with their start and duration."""
    return page.evaluate("name => performance.getEntriesByName(name).map(e => ({...e.detail, startTime: e.startTime,"
                         " duration: e.duration}))", name)


def canvas_centre(page) -> tuple[float, float]:
    box = page.locator(".cg-canvas").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def find(page, neuron: int) -> None:
    """Search ``neuron`` with the canvas's search box: it is selected and drawn at the canvas's centre."""
    search = page.locator(".cg-search")
    search.fill(str(neuron))
    search.press("Enter")
    page.locator(f'.cg-root[data-selected="{neuron}"]').wait_for(timeout=30_000)


def tooltip(page, neuron: int) -> dict:
    """What the tooltip says of ``neuron`` (found, then hovered at the centre): its centrality (4 decimals), rank
    and degree."""
    find(page, neuron)
    x, y = canvas_centre(page)
    page.mouse.move(x + 40, y + 40)
    page.mouse.move(x, y)
    tip = page.locator(".cg-tooltip")
    tip.wait_for(state="visible", timeout=10_000)
    shown = _TOOLTIP.match(tip.inner_text())
    assert shown and int(shown[1]) == neuron, tip.inner_text()
    return {"centrality": float(shown[2]), "rank": int(shown[3].replace(",", "")),
            "degree": int(shown[4].replace(",", ""))}
