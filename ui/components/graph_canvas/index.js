// CPrune's graph canvas: one layer's neuron-similarity graph drawn with the Canvas 2D API.
//
// A Streamlit Components v2 module (no iframe). It is mounted twice per graph: once with the layer's
// payload as bytes (cprune_core/graph_view.py: positions, norms, the edges strongest first, each tau
// step's edge count), which Streamlit sends again only when it changes, and once with the small state
// of each run (tau, selection, kept neurons, colouring, the server's numbers), which draws. The two
// meet in `payloads` below, by the payload's key.
//
// As tau moves, the edges above it are a prefix of the edge list: degree, components (union-find) and
// eigenvector centrality (the core's power iteration on I + A, from the uniform vector, stopping at an
// L1 change below n * tol) are computed for that prefix, once per tau step, and drawn within an
// animation frame. Python hears the tau when the slider is released and the neuron when one is
// clicked or searched, never on every input event. Nothing here asks any host for anything.

const PAYLOAD_MAGIC = "CPG1";
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
  "#7f7f7f"];
const OTHER_COMMUNITY = "#c7ccd1";
const PRUNED_COLOUR = "#8a939c";
const SELECTED_COLOUR = "#d62728";
const EDGE_RGB = "60, 80, 100";
const COLOUR_BINS = 64;
const MAX_PATH_SEGMENTS = 4096; // long paths rasterise slowly; chunks of this many segments do not
const DRAW_CAP = 100_000; // edges drawn at most, the strongest (all of them count in the numbers)
const BITMAP_BYTES = 160e6; // memory for cached edge bitmaps
const SLICE_MS = 8; // background work runs in slices of about this long, so keys and clicks never wait
const PREPARED_STEPS = 4; // tau steps on each side of the one shown made ready in the background
const KEYBOARD_SETTLE_MS = 300; // keys pressed within this time send one tau to Python
const PAYLOADS_KEPT = 3;
const LEGEND_WIDTH = 190;
const LEGEND_ROOM = 104; // the legend's height and margin, above a graph on a narrow stage

const payloads = new Map(); // payload key -> Graph, the most recent last
let payloadsDecoded = 0; // how often a payload was decoded (the benchmark checks a rerun decodes none)
let payloadArrivedAt = null; // when the last new payload came (performance.now()), for the benchmark
const views = new Map(); // mounted element -> GraphView
const waitingViews = new Set();

export default function graphCanvas(component) {
  const { data, parentElement } = component;
  if (data instanceof Uint8Array || data instanceof ArrayBuffer) {
    receivePayload(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    return undefined;
  }
  let view = views.get(parentElement);
  if (!view) {
    view = new GraphView(parentElement);
    views.set(parentElement, view);
  }
  view.update(data, component);
  return () => {
    view.destroy();
    views.delete(parentElement);
  };
}

// ---------------------------------------------------------------- the payload

function receivePayload(bytes) {
  const header = readHeader(bytes);
  if (!payloads.has(header.key)) {
    payloads.set(header.key, new Graph(header, bytes.slice())); // an aligned copy: typed arrays need it
    payloadsDecoded += 1;
    payloadArrivedAt = performance.now();
    while (payloads.size > PAYLOADS_KEPT) payloads.delete(payloads.keys().next().value);
  }
  for (const view of [...waitingViews]) view.payloadArrived();
}

function readHeader(bytes) {
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== PAYLOAD_MAGIC) throw new Error("CPrune graph canvas: not a graph payload");
  const length = new DataView(bytes.buffer, bytes.byteOffset, 8).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
  header.base = 8 + length;
  return header;
}

const TYPED = { float32: Float32Array, uint16: Uint16Array, uint32: Uint32Array };

class Graph {
  constructor(header, bytes) {
    const array = (name) => {
      const spec = header.arrays[name];
      return new TYPED[spec.dtype](bytes.buffer, header.base + spec.offset, spec.length);
    };
    this.key = header.key;
    this.bytes = bytes.length;
    this.n = header.n;
    this.m = header.m;
    this.taus = header.taus;
    this.counts = header.counts;
    this.maxIter = header.maxIter;
    this.tol = header.tol;
    this.positions = array("positions");
    this.norms = array("norms");
    this.rows = array("rows");
    this.cols = array("cols");
    this.weights = array("weights");
    this.analyses = new Map(); // tau step -> Analysis, computed once
  }

  stepOf(tau) {
    let best = 0;
    for (let k = 1; k < this.taus.length; k++) {
      if (Math.abs(this.taus[k] - tau) < Math.abs(this.taus[best] - tau)) best = k;
    }
    return best;
  }

  complete(step) {
    return this.counts[step] <= this.m;
  }

  held(step) { // edges of the payload above the step's tau
    return Math.min(this.counts[step], this.m);
  }

  analysis(step) {
    let found = this.analyses.get(step);
    if (!found) {
      found = analyse(this, this.held(step));
      this.analyses.set(step, found);
    }
    return found;
  }
}

// Degree, components and eigenvector centrality of the graph made of the first `edges` edges.
function analyse(graph, edges) {
  const started = performance.now();
  const { n, rows, cols, weights } = graph;
  const degree = new Uint32Array(n);
  const parent = new Int32Array(n);
  for (let i = 0; i < n; i++) parent[i] = i;
  const root = (i) => {
    while (parent[i] !== i) {
      parent[i] = parent[parent[i]];
      i = parent[i];
    }
    return i;
  };
  for (let e = 0; e < edges; e++) {
    const a = rows[e], b = cols[e];
    degree[a] += 1;
    degree[b] += 1;
    const ra = root(a), rb = root(b);
    if (ra !== rb) parent[ra] = rb;
  }
  const size = new Uint32Array(n);
  let components = 0, largest = 0, isolated = 0;
  for (let i = 0; i < n; i++) {
    const r = root(i);
    if (size[r] === 0) components += 1;
    size[r] += 1;
    if (size[r] > largest) largest = size[r];
    if (degree[i] === 0) isolated += 1;
  }
  const power = powerIteration(graph, edges);
  return {
    edges, degree, components, largest, isolated, centrality: power.x, iterations: power.iterations,
    converged: power.converged, ranks: ranksOf(power.x), ms: performance.now() - started, source: "browser",
  };
}

// The core's power iteration (cprune_core/centrality.power_iteration): x0 = 1/n, x_k = (I + A) x_(k-1)
// normalised to unit L2 norm, until the L1 change is below n * tol or maxIter steps.
function powerIteration(graph, edges) {
  const { n, rows, cols, weights, maxIter, tol } = graph;
  let x = new Float64Array(n).fill(n ? 1 / n : 0);
  let next = new Float64Array(n);
  for (let k = 1; k <= maxIter; k++) {
    next.set(x);
    for (let e = 0; e < edges; e++) {
      const a = rows[e], b = cols[e], w = weights[e];
      next[a] += w * x[b];
      next[b] += w * x[a];
    }
    let squares = 0;
    for (let i = 0; i < n; i++) squares += next[i] * next[i];
    const norm = Math.max(Math.sqrt(squares), Number.MIN_VALUE);
    let change = 0;
    for (let i = 0; i < n; i++) {
      next[i] /= norm;
      change += Math.abs(next[i] - x[i]);
    }
    [x, next] = [next, x];
    if (change < n * tol) return { x, iterations: k, converged: true };
  }
  return { x, iterations: maxIter, converged: false };
}

// 1 for the most central; ties keep the lower index first (as cprune_core.pruning.kept_indices).
function ranksOf(values) {
  const order = Array.from(values.keys()).sort((a, b) => values[b] - values[a] || a - b);
  const ranks = new Uint32Array(values.length);
  order.forEach((node, position) => { ranks[node] = position + 1; });
  return ranks;
}

function fromBase64(text, Type) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new Type(bytes.buffer);
}

// ---------------------------------------------------------------- colours

function hexToRgb(hex) {
  const value = parseInt(hex.slice(1), 16);
  return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
}

const VIRIDIS_BINS = Array.from({ length: COLOUR_BINS }, (_, bin) => {
  const t = bin / (COLOUR_BINS - 1) * (VIRIDIS.length - 1);
  const low = Math.floor(t), high = Math.min(low + 1, VIRIDIS.length - 1), f = t - low;
  const a = hexToRgb(VIRIDIS[low]), b = hexToRgb(VIRIDIS[high]);
  return `rgb(${a.map((v, i) => Math.round(v + (b[i] - v) * f)).join(",")})`;
});

function format(value, digits = 0) {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

// ---------------------------------------------------------------- one mounted canvas

class GraphView {
  constructor(parent) {
    this.parent = parent;
    this.createdAt = performance.now();
    this.root = element("div", "cg-root");
    this.toolbar = element("div", "cg-toolbar", this.root);
    this.tauLabel = element("label", "cg-tau", this.toolbar);
    element("span", "cg-tau-name", this.tauLabel).textContent = "Similarity threshold τ";
    this.slider = element("input", "cg-slider", this.tauLabel);
    this.slider.type = "range";
    this.slider.setAttribute("aria-label", "Similarity threshold τ");
    this.tauOutput = element("output", "cg-tau-value", this.tauLabel);
    this.search = element("input", "cg-search", this.toolbar);
    this.search.type = "text";
    this.search.inputMode = "numeric";
    this.search.placeholder = "Find neuron #";
    this.search.setAttribute("aria-label", "Find a neuron by its index");
    this.resetButton = button("Reset view", "cg-reset", this.toolbar);
    this.pngButton = button("PNG", "cg-png", this.toolbar);
    this.pngButton.title = "Download this view as a PNG image (made in your browser)";
    this.stats = element("div", "cg-stats", this.root);
    this.stats.textContent = "\u00a0"; // a line's height from the start, so the stage keeps its size
    this.stage = element("div", "cg-stage", this.root);
    this.canvas = element("canvas", "cg-canvas", this.stage);
    this.note = element("div", "cg-note", this.stage);
    this.note.hidden = true;
    this.tooltip = element("div", "cg-tooltip", this.stage);
    this.tooltip.hidden = true;
    this.loading = element("div", "cg-loading", this.stage);
    this.loading.textContent = "Loading the graph …";
    this.context = this.canvas.getContext("2d");
    this.edges = new EdgeLayer(this);
    this.root.snapshot = () => this.snapshot();
    this.root.pointOf = (node) => this.pointOf(node);
    parent.appendChild(this.root);

    this.graph = null;
    this.state = {};
    this.step = 0;
    this.serverStep = null;
    this.sentSteps = []; // taus sent to Python and not yet acknowledged, oldest first
    this.selected = null;
    this.view = { scale: 1, x: 0, y: 0 };
    this.shown = null; // the analysis drawn last (its colours stay while the server is asked)
    this.frame = 0;
    this.timings = [];
    this.pendingInput = null;
    this.listen();
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(this.stage);
  }

  destroy() {
    this.resizer.disconnect();
    this.edges.reset();
    waitingViews.delete(this);
    clearTimeout(this.sendTimer);
    cancelAnimationFrame(this.frameRequest);
  }

  // ------------------------------------------------------------ data from Python

  update(data, component) {
    this.component = component;
    this.state = data;
    this.root.style.height = `${data.height}px`;
    this.tauLabel.hidden = !data.slider;
    this.stage.classList.toggle("cg-labelled", Boolean(data.labels));
    this.kept = data.kept ? fromBase64(data.kept, Uint8Array) : null;
    this.communities = data.communities ? fromBase64(data.communities, Uint16Array) : null;
    this.server = data.server ? {
      ...data.server,
      centrality: fromBase64(data.server.centrality, Float32Array),
      degree: fromBase64(data.server.degree, Uint32Array),
    } : null;
    if (data.selected !== this.serverSelected) { // chosen in Python (the panel's number box): follow it
      this.serverSelected = data.selected;
      this.selected = data.selected;
    }
    const graph = payloads.get(data.payload);
    if (!graph) {
      waitingViews.add(this);
      this.loading.hidden = false;
      return;
    }
    waitingViews.delete(this);
    this.loading.hidden = true;
    if (graph !== this.graph) this.useGraph(graph);
    const serverStep = graph.stepOf(data.tau);
    if (serverStep !== this.serverStep) {
      this.serverStep = serverStep;
      const sent = this.sentSteps.indexOf(serverStep);
      if (sent >= 0) this.sentSteps.splice(0, sent + 1); // our own tau, acknowledged (and those sent before it)
      else this.setStep(serverStep); // moved elsewhere (a button, a link): follow
    }
    if (this.server) this.server.step = graph.stepOf(this.server.tau);
    this.scheduleDraw();
  }

  payloadArrived() {
    if (payloads.has(this.state.payload)) this.update(this.state, this.component);
  }

  useGraph(graph) {
    this.graph = graph;
    const taus = graph.taus;
    this.slider.min = String(taus[0]);
    this.slider.max = String(taus[taus.length - 1]);
    this.slider.step = taus.length > 1 ? String(Math.round((taus[1] - taus[0]) * 1e6) / 1e6) : "0.01";
    this.view = { scale: 1, x: 0, y: 0 };
    this.edges.reset();
    this.shown = null;
    this.fit();
  }

  setStep(step) {
    this.step = step;
    this.slider.value = String(this.graph.taus[step]);
  }

  // ------------------------------------------------------------ events

  listen() {
    this.slider.addEventListener("keydown", () => { this.keyboard = true; });
    this.slider.addEventListener("pointerdown", () => { this.keyboard = false; });
    this.slider.addEventListener("input", (event) => {
      if (!this.graph) return;
      this.step = this.graph.stepOf(parseFloat(this.slider.value));
      this.pendingInput = event.timeStamp;
      this.scheduleDraw();
    });
    this.slider.addEventListener("change", () => {
      clearTimeout(this.sendTimer);
      this.sendTimer = setTimeout(() => this.sendTau(), this.keyboard ? KEYBOARD_SETTLE_MS : 0);
    });
    this.search.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || !this.graph) return;
      const index = Number(this.search.value.trim());
      const valid = this.search.value.trim() !== "" && Number.isInteger(index) && index >= 0 && index < this.graph.n;
      this.search.classList.toggle("cg-invalid", !valid);
      this.search.title = valid ? "" : `A neuron index from 0 to ${this.graph.n - 1}`;
      if (valid) {
        this.centreOn(index);
        this.select(index);
      }
    });
    this.resetButton.addEventListener("click", () => {
      this.view = { scale: 1, x: 0, y: 0 };
      this.scheduleDraw();
    });
    this.pngButton.addEventListener("click", () => this.downloadPng());
    this.canvas.addEventListener("wheel", (event) => this.zoom(event), { passive: false });
    this.canvas.addEventListener("pointerdown", (event) => this.pointerDown(event));
    this.canvas.addEventListener("pointermove", (event) => this.pointerMove(event));
    this.canvas.addEventListener("pointerup", (event) => this.pointerUp(event));
    this.canvas.addEventListener("pointerleave", () => this.hover(null));
    this.canvas.addEventListener("dblclick", () => {
      this.view = { scale: 1, x: 0, y: 0 };
      this.scheduleDraw();
    });
  }

  sendTau() {
    if (!this.graph || !this.state.slider) return;
    if (this.step === this.serverStep && !this.sentSteps.length) return;
    this.sentSteps.push(this.step);
    this.component.setTriggerValue("tau", this.graph.taus[this.step]);
  }

  select(node) {
    this.selected = node;
    this.scheduleDraw();
    if (this.state.reportsNeuron) this.component.setTriggerValue("neuron", node);
  }

  zoom(event) {
    event.preventDefault();
    const factor = Math.exp(-event.deltaY * 0.0015);
    const scale = Math.min(Math.max(this.view.scale * factor, 0.5), 200);
    const applied = scale / this.view.scale;
    const [cx, cy] = this.local(event);
    this.view = { scale, x: cx - (cx - this.view.x) * applied, y: cy - (cy - this.view.y) * applied };
    this.interacting = true; // the edges are moved until the wheel rests, then drawn again
    clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => {
      this.interacting = false;
      this.scheduleDraw();
    }, 200);
    this.scheduleDraw();
  }

  centreOn(node) {
    const scale = Math.max(this.view.scale, 3);
    this.view = {
      scale, x: this.width / 2 - this.baseX[node] * scale, y: this.height / 2 - this.baseY[node] * scale,
    };
  }

  pointerDown(event) {
    this.canvas.setPointerCapture(event.pointerId);
    this.drag = { x: event.clientX, y: event.clientY, view: { ...this.view }, moved: false };
  }

  pointerMove(event) {
    if (this.drag) {
      const dx = event.clientX - this.drag.x, dy = event.clientY - this.drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) this.drag.moved = true;
      if (this.drag.moved) {
        this.interacting = true;
        this.view = { ...this.drag.view, x: this.drag.view.x + dx, y: this.drag.view.y + dy };
        this.scheduleDraw();
      }
      return;
    }
    this.hover(this.nodeAt(...this.local(event)), event);
  }

  pointerUp(event) {
    const drag = this.drag;
    this.drag = null;
    if (drag && drag.moved) {
      this.interacting = false;
      this.scheduleDraw();
    }
    if (drag && !drag.moved) {
      const node = this.nodeAt(...this.local(event));
      if (node !== null) {
        this.pickedAt = event.timeStamp;
        this.select(node);
      }
    }
  }

  local(event) {
    const box = this.canvas.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  nodeAt(px, py) {
    if (!this.graph || !this.screenX) return null;
    let best = null, bestDistance = Infinity;
    for (let i = 0; i < this.graph.n; i++) {
      const dx = this.screenX[i] - px, dy = this.screenY[i] - py, distance = dx * dx + dy * dy;
      if (distance < bestDistance) {
        best = i;
        bestDistance = distance;
      }
    }
    const reach = (this.radius ? this.radius[best] : 4) + 4;
    return best !== null && bestDistance <= reach * reach ? best : null;
  }

  hover(node, event) {
    if (node === null || !this.shown) {
      this.tooltip.hidden = true;
      return;
    }
    const analysis = this.shown;
    const lines = [`neuron ${node}`,
      `centrality ${analysis.centrality[node].toFixed(4)} (rank ${format(analysis.ranks[node])} of ${format(this.graph.n)})`,
      `degree ${format(analysis.degree[node])}`, `L2 norm ${this.graph.norms[node].toFixed(3)}`];
    if (this.kept) lines.push(this.kept[node] ? "kept" : "pruned");
    if (this.communities && this.state.colouring === "community") lines.push(`community ${this.communities[node] + 1}`);
    this.tooltip.textContent = lines.join("\n");
    this.tooltip.hidden = false;
    const [px, py] = this.local(event);
    this.tooltip.style.left = `${Math.min(px + 14, this.width - 190)}px`;
    this.tooltip.style.top = `${Math.max(py - 10, 0)}px`;
  }

  // ------------------------------------------------------------ geometry

  resize() {
    const width = this.stage.clientWidth, height = this.stage.clientHeight;
    if (!width || !height) return;
    this.width = width;
    this.height = height;
    this.ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * this.ratio);
    this.canvas.height = Math.round(height * this.ratio);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    this.edges.reset();
    this.fit();
    this.scheduleDraw();
  }

  // Positions fitted to the stage at scale 1 (y up); the view's scale and offset apply on top. Far outliers
  // (isolated neurons pushed out by a force layout) are held at the edge of the box of the rest, so they do
  // not shrink the rest of the graph to a dot.
  fit() {
    if (!this.graph || !this.width) return;
    const { n, positions } = this.graph;
    const [minX, maxX] = robustRange(positions, 0, n), [minY, maxY] = robustRange(positions, 1, n);
    const clampX = (v) => Math.min(Math.max(v, minX), maxX), clampY = (v) => Math.min(Math.max(v, minY), maxY);
    // Room for the legend (top right): beside the graph on a wide stage, above it on a narrow one.
    const wide = this.width > 900;
    const pad = { left: 24, right: wide ? LEGEND_WIDTH + 34 : 24, top: wide ? 24 : LEGEND_ROOM, bottom: 24 };
    const spanX = Math.max(maxX - minX, 1e-9), spanY = Math.max(maxY - minY, 1e-9);
    const k = Math.min((this.width - pad.left - pad.right) / spanX, (this.height - pad.top - pad.bottom) / spanY);
    const offsetX = pad.left + (this.width - pad.left - pad.right - k * spanX) / 2;
    const offsetY = pad.top + (this.height - pad.top - pad.bottom - k * spanY) / 2;
    this.baseX = new Float32Array(n);
    this.baseY = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      this.baseX[i] = n === 1 ? this.width / 2 : offsetX + (clampX(positions[2 * i]) - minX) * k;
      this.baseY[i] = n === 1 ? this.height / 2 : offsetY + (maxY - clampY(positions[2 * i + 1])) * k;
    }
  }

  project() {
    const { n } = this.graph;
    const { scale, x, y } = this.view;
    if (!this.screenX || this.screenX.length !== n) {
      this.screenX = new Float32Array(n);
      this.screenY = new Float32Array(n);
    }
    for (let i = 0; i < n; i++) {
      this.screenX[i] = this.baseX[i] * scale + x;
      this.screenY[i] = this.baseY[i] * scale + y;
    }
  }

  // ------------------------------------------------------------ drawing

  scheduleDraw() {
    if (this.frameRequest) return;
    this.frameRequest = requestAnimationFrame(() => {
      this.frameRequest = 0;
      this.draw();
    });
  }

  // What the step shows: the browser's own analysis where it holds every edge above tau; else the
  // server's numbers for that tau when they have come; else the last colours, marked as waiting.
  analysisFor(step) {
    if (this.graph.complete(step)) return this.graph.analysis(step);
    if (this.server && this.server.step === step) {
      return {
        edges: this.graph.counts[step], degree: this.server.degree, components: this.server.components,
        largest: this.server.largest, isolated: this.server.isolated, centrality: this.server.centrality,
        ranks: ranksOf(this.server.centrality), converged: this.server.converged, source: "server",
      };
    }
    return null;
  }

  drawnEdges(step) {
    return Math.min(this.graph.held(step), DRAW_CAP);
  }

  draw() {
    if (!this.graph || !this.width || this.loading.hidden === false) return;
    const started = performance.now();
    const step = this.step;
    const analysis = this.analysisFor(step);
    const computed = performance.now();
    if (analysis) this.shown = analysis;
    if (!this.shown) this.shown = this.graph.analysis(step); // a first draw where the cap bites: the held edges
    this.project();
    const context = this.context;
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (this.interacting) {
      this.edges.drawMoved(context); // panning or zooming: the last edges, moved; redrawn when it settles
    } else {
      this.edges.use(this.viewKey(), this.graph.taus.map((_, k) => this.drawnEdges(k)));
      context.drawImage(this.edges.bitmap(this.drawnEdges(step)), 0, 0);
    }
    const edgesDone = performance.now();
    context.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
    this.drawSelection(this.graph.held(step));
    this.drawNodes(this.shown);
    this.drawLegend();
    const finished = performance.now();
    this.writeStats(step, analysis);
    this.frame += 1;
    this.root.dataset.frame = String(this.frame);
    this.root.dataset.tau = this.graph.taus[step].toFixed(2);
    this.root.dataset.payload = this.graph.key;
    const timing = {
      tau: this.graph.taus[step], edges: this.drawnEdges(step), inputAt: this.pendingInput, drawnAt: finished,
      computeMs: computed - started, edgeMs: edgesDone - computed, nodeMs: finished - edgesDone, presentedAt: null,
    };
    this.timings.push(timing);
    if (this.timings.length > 500) this.timings.shift();
    requestAnimationFrame(() => { timing.presentedAt = performance.now(); }); // the frame after: rasterised
    this.pendingInput = null;
    this.prepareNeighbours();
  }

  viewKey() {
    return `${this.view.scale}|${this.view.x}|${this.view.y}|${this.width}|${this.height}|${this.ratio}`;
  }

  // While nothing happens, the steps near this one are made ready, nearest first, one slice of about SLICE_MS
  // at a time (so a key press or a click waits for one slice at most): their analyses and edge bitmaps.
  prepareNeighbours() {
    clearTimeout(this.idleTimer);
    const graph = this.graph, here = this.step;
    const steps = Array.from(graph.taus.keys()).filter((k) => Math.abs(k - here) <= PREPARED_STEPS)
      .sort((a, b) => Math.abs(a - here) - Math.abs(b - here));
    const next = () => {
      const analysis = steps.find((k) => graph.complete(k) && !graph.analyses.has(k));
      if (analysis !== undefined) return () => graph.analysis(analysis);
      const bitmap = steps.map((k) => this.drawnEdges(k)).find((length) => !this.edges.has(length));
      return bitmap === undefined ? null : (started) => this.edges.grow(bitmap, started);
    };
    const work = () => {
      this.preparing = false;
      if (this.interacting || this.step !== here || this.graph !== graph || this.edges.key !== this.viewKey()) return;
      const task = next();
      if (!task) return;
      task(performance.now());
      this.preparing = true;
      this.idleTimer = setTimeout(work, 0);
    };
    this.preparing = true;
    this.idleTimer = setTimeout(work, 30);
  }

  // Edges [from, to), in bands whose opacity falls with the edge's rank: the strongest edges are the
  // darkest, and the many weak ones added at a low tau stay a light haze. A small graph draws each edge
  // with a width by its similarity.
  strokeEdges(context, from, to) {
    const { rows, cols, weights, n } = this.graph;
    const x = this.screenX, y = this.screenY;
    if (this.state.labels) {
      for (let e = from; e < to; e++) {
        context.beginPath();
        context.moveTo(x[rows[e]], y[rows[e]]);
        context.lineTo(x[cols[e]], y[cols[e]]);
        context.lineWidth = 0.6 + 3 * Math.max(weights[e], 0);
        context.strokeStyle = `rgba(${EDGE_RGB}, 0.45)`;
        context.stroke();
      }
      return;
    }
    const unit = Math.max(64, n);
    context.lineWidth = 0.7;
    let e = from;
    while (e < to) {
      const band = Math.floor(Math.log2(e / unit + 1));
      const bandEnd = unit * (2 ** (band + 1) - 1);
      const end = Math.min(to, bandEnd, e + MAX_PATH_SEGMENTS);
      context.beginPath();
      for (let k = e; k < end; k++) {
        context.moveTo(x[rows[k]], y[rows[k]]);
        context.lineTo(x[cols[k]], y[cols[k]]);
      }
      context.strokeStyle = `rgba(${EDGE_RGB}, ${Math.max(0.32 / Math.sqrt(2 ** band), 0.03).toFixed(3)})`;
      context.stroke();
      e = end;
    }
  }

  drawSelection(count) {
    const node = this.selected;
    if (node === null || node === undefined || node >= this.graph.n) return;
    const { rows, cols } = this.graph;
    const context = this.context;
    context.beginPath();
    for (let e = 0; e < count; e++) {
      if (rows[e] === node || cols[e] === node) {
        context.moveTo(this.screenX[rows[e]], this.screenY[rows[e]]);
        context.lineTo(this.screenX[cols[e]], this.screenY[cols[e]]);
      }
    }
    context.strokeStyle = "rgba(214, 39, 40, 0.7)";
    context.lineWidth = 1.4;
    context.stroke();
  }

  // Nodes sized by degree and coloured by centrality (or community), one path per colour, the most
  // central last (on top); pruned neurons hollow, before the kept ones.
  drawNodes(analysis) {
    const { n } = this.graph;
    const context = this.context;
    const x = this.screenX, y = this.screenY;
    let top = 1;
    for (let i = 0; i < n; i++) top = Math.max(top, analysis.degree[i]);
    const base = Math.min(Math.max(110 / Math.sqrt(n), 2), this.state.labels ? 9 : 6) * Math.sqrt(this.view.scale);
    if (!this.radius || this.radius.length !== n) this.radius = new Float32Array(n);
    for (let i = 0; i < n; i++) this.radius[i] = base * (0.55 + 0.9 * Math.sqrt(analysis.degree[i] / top));
    const bins = this.colourBins(analysis);
    const pruned = [];
    const groups = bins.colours.map(() => []);
    for (let i = 0; i < n; i++) {
      if (this.kept && !this.kept[i]) pruned.push(i);
      else groups[bins.of[i]].push(i);
    }
    if (pruned.length) {
      context.beginPath();
      for (const i of pruned) circle(context, x[i], y[i], this.radius[i]);
      context.lineWidth = 1.3;
      context.strokeStyle = PRUNED_COLOUR;
      context.stroke();
    }
    const outline = n <= 1500;
    groups.forEach((members, bin) => {
      if (!members.length) return;
      context.beginPath();
      for (const i of members) circle(context, x[i], y[i], this.radius[i]);
      context.fillStyle = bins.colours[bin];
      context.fill();
      if (outline) {
        context.lineWidth = 0.6;
        context.strokeStyle = "rgba(255, 255, 255, 0.8)";
        context.stroke();
      }
    });
    const selected = this.selected;
    if (selected !== null && selected !== undefined && selected < n) {
      context.beginPath();
      circle(context, x[selected], y[selected], this.radius[selected] + 5);
      context.lineWidth = 2.5;
      context.strokeStyle = SELECTED_COLOUR;
      context.stroke();
    }
    if (this.state.labels) {
      context.font = "11px sans-serif";
      context.fillStyle = "#1b2631";
      context.textAlign = "center";
      for (let i = 0; i < n; i++) context.fillText(String(i), x[i], y[i] - this.radius[i] - 3);
    }
  }

  colourBins(analysis) {
    const n = this.graph.n;
    const of = new Uint16Array(n);
    if (this.state.colouring === "community" && this.communities) {
      for (let i = 0; i < n; i++) of[i] = Math.min(this.communities[i], PALETTE.length);
      return { of, colours: [...PALETTE, OTHER_COMMUNITY] };
    }
    const values = analysis.centrality;
    let low = Infinity, high = -Infinity;
    for (let i = 0; i < n; i++) {
      low = Math.min(low, values[i]);
      high = Math.max(high, values[i]);
    }
    const span = high - low;
    for (let i = 0; i < n; i++) {
      of[i] = span > 0 ? Math.round((values[i] - low) / span * (COLOUR_BINS - 1)) : COLOUR_BINS >> 1;
    }
    this.range = [low, high];
    return { of, colours: VIRIDIS_BINS };
  }

  // The legend, drawn on the canvas so that the PNG carries it: the colour scale (or the largest
  // communities), what size means, and filled/hollow when pruning is shown.
  drawLegend() {
    const context = this.context;
    const community = this.state.colouring === "community" && this.communities;
    const width = LEGEND_WIDTH, x = this.width - width - 10;
    let height = community ? 52 + 16 * this.communitySizes().length : 74;
    if (this.kept) height += 34;
    context.fillStyle = "rgba(255, 255, 255, 0.88)";
    context.strokeStyle = "#d5dbe1";
    context.lineWidth = 1;
    context.beginPath();
    context.rect(x, 10, width, height);
    context.fill();
    context.stroke();
    context.fillStyle = "#1b2631";
    context.font = "12px sans-serif";
    context.textAlign = "left";
    let row = 27;
    if (community) {
      context.fillText("Louvain communities", x + 8, row);
      context.fillText(`of the graph at τ = ${this.state.communityTau.toFixed(2)}`, x + 8, row + 15);
      row += 17;
      this.communitySizes().forEach(([label, size]) => {
        row += 16;
        context.fillStyle = label < PALETTE.length ? PALETTE[label] : OTHER_COMMUNITY;
        context.beginPath();
        circle(context, x + 14, row - 4, 5);
        context.fill();
        context.fillStyle = "#1b2631";
        context.fillText(label < PALETTE.length ? `${label + 1}: ${format(size)} neurons` : `others: ${format(size)}`,
          x + 26, row);
      });
    } else {
      context.fillText("eigenvector centrality", x + 8, row);
      const gradient = context.createLinearGradient(x + 8, 0, x + width - 8, 0);
      VIRIDIS.forEach((colour, i) => gradient.addColorStop(i / (VIRIDIS.length - 1), colour));
      context.fillStyle = gradient;
      context.fillRect(x + 8, row + 7, width - 16, 12);
      context.fillStyle = "#1b2631";
      context.font = "11px sans-serif";
      const [low, high] = this.range || [0, 0];
      context.fillText(low.toPrecision(3), x + 8, row + 33);
      context.textAlign = "right";
      context.fillText(high.toPrecision(3), x + width - 8, row + 33);
      context.textAlign = "left";
      row += 47;
      context.fillText("size: degree at this τ", x + 8, row);
    }
    if (this.kept) {
      row += 18;
      context.fillStyle = "#3b528b";
      context.beginPath();
      circle(context, x + 14, row - 4, 5);
      context.fill();
      context.fillStyle = "#1b2631";
      context.fillText("kept", x + 26, row);
      context.beginPath();
      circle(context, x + 84, row - 4, 5);
      context.strokeStyle = PRUNED_COLOUR;
      context.lineWidth = 1.3;
      context.stroke();
      context.fillText("pruned", x + 96, row);
    }
  }

  communitySizes() {
    const sizes = new Map();
    for (const label of this.communities) {
      const shown = Math.min(label, PALETTE.length);
      sizes.set(shown, (sizes.get(shown) || 0) + 1);
    }
    return [...sizes.entries()].sort((a, b) => a[0] - b[0]);
  }

  writeStats(step, analysis) {
    const graph = this.graph;
    const n = graph.n, edges = graph.counts[step], tau = graph.taus[step];
    const density = n > 1 ? edges / (n * (n - 1) / 2) : 0;
    this.tauOutput.textContent = tau.toFixed(2);
    const cells = [["neurons", format(n), n], ["edges", format(edges), edges],
      ["density", density.toFixed(4), density]];
    if (analysis) {
      cells.push(["components", format(analysis.components), analysis.components],
        ["largest", format(analysis.largest), analysis.largest], ["isolated", format(analysis.isolated), analysis.isolated]);
    } else {
      cells.push(["components", "…", ""], ["largest", "…", ""], ["isolated", "…", ""]);
    }
    const labels = { neurons: "neurons", edges: "edges", density: "density", components: "components",
      largest: "in the largest component", isolated: "isolated" };
    this.stats.replaceChildren(...cells.map(([name, text, value]) => {
      const cell = element("span", "cg-stat");
      cell.dataset.stat = name;
      cell.dataset.value = String(value);
      element("b", "", cell).textContent = text;
      cell.append(` ${value === 1 && name !== "density" ? labels[name].replace(/s$/, "") : labels[name]}`);
      return cell;
    }));
    const notes = [];
    if (!graph.complete(step)) {
      notes.push(`At τ = ${tau.toFixed(2)} the graph has ${format(edges)} edges; the browser holds the ` +
        `${format(graph.m)} strongest (the cap), so it draws those. ` + (analysis
        ? "Components, sizes and colours are the server's, for this τ."
        : "Components, sizes and colours come from the server when you release the slider."));
    }
    if (this.drawnEdges(step) < graph.held(step)) {
      notes.push(`Drawn: the ${format(this.drawnEdges(step))} strongest of these edges (every one counts in the ` +
        "numbers and colours); more would be a solid blot, and slow to draw.");
    }
    if (analysis && analysis.converged === false) {
      notes.push("Power iteration stopped at its step budget before converging: the colours use its last iterate.");
    }
    this.note.textContent = notes.join(" ");
    this.note.hidden = !notes.length;
    this.root.dataset.source = analysis ? analysis.source : "waiting";
  }

  downloadPng() {
    this.draw();
    const link = document.createElement("a");
    link.download = `${this.state.fileName || "graph"}-tau${this.graph.taus[this.step].toFixed(2)}.png`;
    this.canvas.toBlob((blob) => {
      link.href = URL.createObjectURL(blob);
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    }, "image/png");
  }

  // Where a neuron is drawn, in the page's coordinates (for the tests and the benchmark to click it).
  pointOf(node) {
    const box = this.canvas.getBoundingClientRect();
    return { x: box.left + this.screenX[node], y: box.top + this.screenY[node] };
  }

  // What the tests and the benchmark read: the numbers on screen and the timings of the last draws.
  snapshot() {
    const graph = this.graph;
    const analysis = graph ? this.analysisFor(this.step) : null;
    return {
      tau: graph ? graph.taus[this.step] : null, n: graph ? graph.n : 0, held: graph ? graph.m : 0,
      edges: graph ? graph.counts[this.step] : 0, frame: this.frame, selected: this.selected,
      density: Number(this.stats.querySelector('[data-stat="density"]')?.dataset.value ?? NaN),
      source: analysis ? analysis.source : "waiting",
      components: analysis ? analysis.components : null, largest: analysis ? analysis.largest : null,
      isolated: analysis ? analysis.isolated : null,
      centrality: analysis ? Array.from(analysis.centrality) : null,
      degree: analysis ? Array.from(analysis.degree) : null,
      iterations: analysis ? analysis.iterations : null, timings: this.timings.slice(), payloadsDecoded,
      payloadBytes: graph ? graph.bytes : 0, payloadArrivedAt, createdAt: this.createdAt,
      preparing: Boolean(this.preparing), pickedAt: this.pickedAt ?? null,
      analysisMs: graph ? Object.fromEntries([...graph.analyses].map(([k, a]) => [graph.taus[k].toFixed(2),
        [a.edges, Math.round(a.ms * 10) / 10, a.iterations]])) : {},
    };
  }
}

// The edges as bitmaps, one per tau step (the edges above a tau are a prefix of the list), each rasterised
// once on an OffscreenCanvas and made from the bitmap of the step above it plus the edges between the two,
// the steps near the tau shown made in the background: a step back is a copy, a step on draws only the new
// edges. Bitmaps far from the tau shown go first when memory runs short. A new view (zoom, pan,
// size) starts afresh.
class EdgeLayer {
  constructor(view) {
    this.view = view;
    this.bitmaps = new Map(); // prefix length -> ImageBitmap
    this.chain = [0]; // the prefix lengths drawn at the tau steps, ascending
    this.key = "";
    this.msPerEdge = 0.004; // measured as edges are drawn: sizes the slices
  }

  reset() {
    for (const bitmap of this.bitmaps.values()) bitmap.close();
    this.bitmaps.clear();
    this.key = "";
    this.last = null;
  }

  use(key, lengths) {
    if (key === this.key) return;
    this.reset();
    this.key = key;
    this.chain = [...new Set([0, ...lengths])].sort((a, b) => a - b);
    const { canvas } = this.view;
    this.surface = new OffscreenCanvas(canvas.width, canvas.height);
    this.surface.getContext("2d");
    this.bitmaps.set(0, this.surface.transferToImageBitmap());
    this.limit = Math.max(4, Math.floor(BITMAP_BYTES / (canvas.width * canvas.height * 4)));
  }

  has(length) {
    return this.bitmaps.has(length);
  }

  // The steps' lengths worth keeping while `current` is shown, nearest first: as many as memory allows.
  wanted(current) {
    const at = this.chain.indexOf(current);
    return this.chain.map((length, i) => [Math.abs(i - at), length]).sort((a, b) => a[0] - b[0])
      .slice(0, this.limit).map(([, length]) => length);
  }

  bitmap(length) {
    while (!this.bitmaps.has(length)) this.grow(length, null);
    this.evict(length);
    const bitmap = this.bitmaps.get(length);
    this.last = { bitmap, view: { ...this.view.view } };
    return bitmap;
  }

  // Towards `target` (a step's length) from the longest bitmap below it: now, all the way (started null: a
  // frame waits for it); or in the background, to the next step's length or as far as a slice begun at
  // `started` allows (a bitmap in between is kept until it is grown further).
  grow(target, started) {
    let from = 0;
    for (const length of this.bitmaps.keys()) if (length <= target && length > from) from = length;
    const next = started === null ? target : this.chain.find((length) => length > from);
    const budget = started === null ? Infinity
      : Math.max(500, Math.floor((SLICE_MS - (performance.now() - started)) / this.msPerEdge));
    const to = Math.min(next, target, from + budget);
    const context = this.surface.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, this.surface.width, this.surface.height);
    context.drawImage(this.bitmaps.get(from), 0, 0);
    const ratio = this.view.ratio;
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    const began = performance.now();
    this.view.strokeEdges(context, from, to);
    const bitmap = this.surface.transferToImageBitmap();
    if (to - from > 1000) this.msPerEdge = (performance.now() - began) / (to - from);
    if (from !== 0 && !this.chain.includes(from)) { // a slice's bitmap, grown past
      this.bitmaps.get(from).close();
      this.bitmaps.delete(from);
    }
    this.bitmaps.set(to, bitmap);
  }

  evict(current) {
    const keep = new Set([0, current, ...this.wanted(current)]);
    for (const [length, bitmap] of this.bitmaps) {
      if (keep.has(length) || !this.chain.includes(length)) continue;
      bitmap.close();
      this.bitmaps.delete(length);
    }
  }

  // The last bitmap drawn, moved and scaled from the view it was drawn at to the current one.
  drawMoved(context) {
    if (!this.last) return;
    const from = this.last.view, to = this.view.view, ratio = this.view.ratio;
    const scale = to.scale / from.scale;
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.drawImage(this.last.bitmap, to.x - from.x * scale, to.y - from.y * scale,
      this.view.width * scale, this.view.height * scale);
  }
}

// The range of coordinate `axis` within Tukey's fences (one and a half interquartile ranges beyond the
// quartiles), never beyond the nodes' own range: all of it for fewer than 8 nodes.
function robustRange(positions, axis, n) {
  if (!n) return [0, 1];
  const values = Array.from({ length: n }, (_, i) => positions[2 * i + axis]).sort((a, b) => a - b);
  if (n < 8) return [values[0], values[n - 1]];
  const q1 = values[Math.floor(0.25 * (n - 1))], q3 = values[Math.ceil(0.75 * (n - 1))], spread = 1.5 * (q3 - q1);
  return [Math.max(values[0], q1 - spread), Math.min(values[n - 1], q3 + spread)];
}

function circle(context, x, y, r) {
  context.moveTo(x + r, y);
  context.arc(x, y, r, 0, 2 * Math.PI);
}

function element(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.appendChild(node);
  return node;
}

function button(text, className, parent) {
  const node = element("button", className, parent);
  node.type = "button";
  node.textContent = text;
  return node;
}
