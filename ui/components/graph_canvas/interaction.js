// What a person does to the canvas: the tau slider (keys or drag), the neuron search, zoom (wheel), pan (drag),
// hover, click, reset and PNG. Each event becomes a call on the view (view.js); Python hears only a released
// tau and a chosen neuron, never an input event.

const KEYBOARD_SETTLE_MS = 300; // keys pressed within this time send one tau to Python
const WHEEL_SETTLE_MS = 200; // the edges are moved while the wheel turns, drawn again once it rests
const DRAG_THRESHOLD_PX = 4; // a press that moves less than this is a click
const MIN_SCALE = 0.5, MAX_SCALE = 200;

// The neuron index typed in the search box, or null unless it is an integer in 0..n-1.
export function parseNeuron(text, n) {
  const trimmed = text.trim();
  const index = Number(trimmed);
  return trimmed !== "" && Number.isInteger(index) && index >= 0 && index < n ? index : null;
}

// The view {scale, x, y} after a wheel turn of `deltaY` at (cx, cy): the point under the pointer stays put.
export function zoomedView(view, cx, cy, deltaY) {
  const scale = Math.min(Math.max(view.scale * Math.exp(-deltaY * 0.0015), MIN_SCALE), MAX_SCALE);
  const applied = scale / view.scale;
  return { scale, x: cx - (cx - view.x) * applied, y: cy - (cy - view.y) * applied };
}

// The node drawn nearest (px, py), if the point is within its radius (`radius[i]`, or 4) plus 4 pixels; else null.
export function nearestNode(xs, ys, radius, px, py) {
  let best = null, bestDistance = Infinity;
  for (let i = 0; i < xs.length; i++) {
    const dx = xs[i] - px, dy = ys[i] - py, distance = dx * dx + dy * dy;
    if (distance < bestDistance) {
      best = i;
      bestDistance = distance;
    }
  }
  const reach = (radius ? radius[best] : 4) + 4;
  return best !== null && bestDistance <= reach * reach ? best : null;
}

export class Interaction {
  constructor(view) {
    this.view = view;
    this.keyboard = false;
    this.drag = null;
    this.listenToSlider();
    this.listenToSearch();
    this.listenToCanvas();
    view.resetButton.addEventListener("click", () => view.resetView());
    view.pngButton.addEventListener("click", () => view.downloadPng());
  }

  destroy() {
    clearTimeout(this.sendTimer);
    clearTimeout(this.settleTimer);
  }

  listenToSlider() {
    const { view } = this;
    view.slider.addEventListener("keydown", () => { this.keyboard = true; });
    view.slider.addEventListener("pointerdown", () => { this.keyboard = false; });
    view.slider.addEventListener("input", (event) => view.moveTo(parseFloat(view.slider.value), event.timeStamp));
    view.slider.addEventListener("change", () => {
      clearTimeout(this.sendTimer);
      this.sendTimer = setTimeout(() => view.sendTau(), this.keyboard ? KEYBOARD_SETTLE_MS : 0);
    });
  }

  listenToSearch() {
    const { view } = this;
    view.search.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || !view.graph) return;
      const index = parseNeuron(view.search.value, view.graph.n);
      view.search.classList.toggle("cg-invalid", index === null);
      view.search.title = index === null ? `A neuron index from 0 to ${view.graph.n - 1}` : "";
      if (index !== null) {
        view.centreOn(index);
        view.select(index);
      }
    });
  }

  listenToCanvas() {
    const { canvas } = this.view;
    canvas.addEventListener("wheel", (event) => this.zoom(event), { passive: false });
    canvas.addEventListener("pointerdown", (event) => this.pointerDown(event));
    canvas.addEventListener("pointermove", (event) => this.pointerMove(event));
    canvas.addEventListener("pointerup", (event) => this.pointerUp(event));
    canvas.addEventListener("pointerleave", () => this.view.hover(null));
    canvas.addEventListener("dblclick", () => this.view.resetView());
  }

  zoom(event) {
    event.preventDefault();
    const [cx, cy] = this.local(event);
    this.moving(zoomedView(this.view.view, cx, cy, event.deltaY));
    clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => this.view.setView(this.view.view, false), WHEEL_SETTLE_MS);
  }

  moving(view) { // the edges are moved, not drawn again, until the view rests
    this.view.setView(view, true);
  }

  pointerDown(event) {
    this.view.canvas.setPointerCapture(event.pointerId);
    this.drag = { x: event.clientX, y: event.clientY, view: { ...this.view.view }, moved: false };
  }

  pointerMove(event) {
    const drag = this.drag;
    if (!drag) {
      this.view.hover(this.view.nodeAt(...this.local(event)), ...this.local(event));
      return;
    }
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > DRAG_THRESHOLD_PX) drag.moved = true;
    if (drag.moved) this.moving({ ...drag.view, x: drag.view.x + dx, y: drag.view.y + dy });
  }

  pointerUp(event) {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    if (drag.moved) {
      this.view.setView(this.view.view, false);
      return;
    }
    const node = this.view.nodeAt(...this.local(event));
    if (node !== null) this.view.select(node, event.timeStamp);
  }

  local(event) {
    const box = this.view.canvas.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }
}
