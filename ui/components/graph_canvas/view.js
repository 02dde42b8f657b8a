// One mounted canvas: what Python sends each run (update), the layer's geometry, and the drawing with the
// Canvas 2D API. The counts and colours come from analysis.js; the events from interaction.js.
//
// What the canvas shows is also its read-only status, for whoever reads the page: the root element's data
// attributes (data-tau, data-frame, data-source, data-centrality, data-selected, data-held, data-preparing,
// data-payload) and each number above the graph (.cg-stat[data-stat][data-value]). Its timings are User
// Timing entries (performance.getEntriesByName), seen in a browser's performance tools: FRAME_ENTRY per
// frame drawn, ANALYSIS_ENTRY per tau step's centrality, PAYLOAD_ENTRY per payload decoded, PICK_ENTRY
// per neuron clicked.

import { holdsEvery, edgesAbove, stepOf, ranksOf } from "./analysis.js";
import { fromBase64 } from "./payload.js";
import { Interaction, nearestNode } from "./interaction.js";
import { EdgeLayer } from "./edges.js";
import { NodeRaster, rgba } from "./nodes.js";
import { LEGEND_WIDTH, PRUNED_COLOUR, circle, colourBins, communitySizes, drawLegend, format } from "./legend.js";

export const FRAME_ENTRY = "cprune-canvas:frame";
export const ANALYSIS_ENTRY = "cprune-canvas:analysis";
export const PAYLOAD_ENTRY = "cprune-canvas:payload";
export const PICK_ENTRY = "cprune-canvas:pick";
const ENTRIES_KEPT = 1000; // frame entries kept in the performance timeline, the most recent
const SELECTED_COLOUR = "#d62728";
const OUTLINE = [255, 255, 255, 0.8]; // around each node of a small graph
const DRAW_CAP = 100_000; // edges drawn at most, the strongest (all of them count in the numbers)
const SLICE_MS = 8; // background work runs in slices of about this long, so keys and clicks never wait
const FRAME_BUDGET_MS = 20; // a frame after a single move of tau waits about this long for its centrality
const HELD_NODES_ABOVE = 4096; // a larger layer's nodes (4-12 ms to draw at 14,336) stay put while tau moves fast
const BURST_MS = 100; // moves of tau closer together than this (a drag, a held key) wait for none
const PROGRESS_MS = 250; // a centrality still converging is drawn again this often
const IDLE_MS = 30; // background work starts this long after a frame
const PREPARED_STEPS = 4; // tau steps on each side of the one shown made ready in the background
const LEGEND_ROOM = 104; // the legend's height and margin, above a graph on a narrow stage
const OUTLIERS_HELD = 0.01; // nodes far out of the rest are held at its edge, up to this share of them

export class GraphView {
  constructor(parent) {
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
    parent.appendChild(this.root);

    this.graph = null;
    this.layer = null;
    this.state = {};
    this.step = 0;
    this.serverStep = null;
    this.sentSteps = []; // taus sent to Python and not yet acknowledged, oldest first
    this.selected = null;
    this.view = { scale: 1, x: 0, y: 0 };
    this.shown = null; // what the last frame showed: its counts and colours stay while newer ones are computed
    this.frame = 0;
    this.frameEntries = 0;
    this.pendingInput = null;
    this.lastInputAt = -Infinity;
    this.edges = new EdgeLayer(this);
    this.nodeRaster = new NodeRaster();
    this.interaction = new Interaction(this);
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(this.stage);
  }

  destroy() {
    this.resizer.disconnect();
    this.interaction.destroy();
    this.edges.reset();
    clearTimeout(this.idleTimer);
    clearTimeout(this.heldTimer);
    cancelAnimationFrame(this.frameRequest);
  }

  // ------------------------------------------------------------ what Python sends

  // This run's state; `layer` is its payload's LayerAnalysis, undefined until the payload has come, or
  // {failed: sentence} when this browser could not hold it.
  update(data, component, layer) {
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
    if (!layer || layer.failed) {
      this.loading.textContent = layer ? layer.failed : "Loading the graph …";
      this.loading.hidden = false;
      return;
    }
    this.loading.hidden = true;
    if (layer !== this.layer) this.useLayer(layer);
    const serverStep = stepOf(this.graph.taus, data.tau);
    if (serverStep !== this.serverStep) {
      this.serverStep = serverStep;
      const sent = this.sentSteps.indexOf(serverStep);
      if (sent >= 0) this.sentSteps.splice(0, sent + 1); // our own tau, acknowledged (and those sent before it)
      else this.setStep(serverStep); // moved elsewhere (a button, a link): follow
    }
    if (this.server) this.server.step = stepOf(this.graph.taus, this.server.tau);
    this.scheduleDraw();
  }

  useLayer(layer) {
    this.layer = layer;
    this.graph = layer.graph;
    const taus = this.graph.taus;
    this.slider.min = String(taus[0]);
    this.slider.max = String(taus[taus.length - 1]);
    this.slider.step = taus.length > 1 ? String(Math.round((taus[1] - taus[0]) * 1e6) / 1e6) : "0.01";
    this.view = { scale: 1, x: 0, y: 0 };
    this.edges.reset();
    this.shown = null;
    this.selectedEdges = null;
    this.fit();
  }

  setStep(step) {
    this.step = step;
    this.slider.value = String(this.graph.taus[step]);
  }

  // ------------------------------------------------------------ what the person does (interaction.js)

  // The slider moved to `tau` by an input event at `inputAt`.
  moveTo(tau, inputAt) {
    if (!this.graph) return;
    this.step = stepOf(this.graph.taus, tau);
    this.burst = inputAt - this.lastInputAt < BURST_MS;
    this.lastInputAt = inputAt;
    this.pendingInput = inputAt;
    this.scheduleDraw();
  }

  sendTau() {
    if (!this.graph || !this.state.slider) return;
    if (this.step === this.serverStep && !this.sentSteps.length) return;
    this.sentSteps.push(this.step);
    this.component.setTriggerValue("tau", this.graph.taus[this.step]);
  }

  // `node` chosen (by a click at `pickedAt`, or a search); Python hears it where the page asks.
  select(node, pickedAt = null) {
    this.selected = node;
    if (pickedAt !== null) performance.mark(PICK_ENTRY, { startTime: pickedAt, detail: { neuron: node } });
    this.scheduleDraw();
    if (this.state.reportsNeuron) this.component.setTriggerValue("neuron", node);
  }

  centreOn(node) {
    const scale = Math.max(this.view.scale, 3);
    this.setView({
      scale, x: this.width / 2 - this.baseX[node] * scale, y: this.height / 2 - this.baseY[node] * scale,
    }, false);
  }

  resetView() {
    this.setView({ scale: 1, x: 0, y: 0 }, false);
  }

  // A new zoom and pan; `moving`: the last edges are moved until the view rests (setView again, false).
  setView(view, moving) {
    this.view = view;
    this.interacting = moving;
    this.scheduleDraw();
  }

  nodeAt(px, py) {
    if (!this.graph || !this.screenX) return null;
    return nearestNode(this.screenX, this.screenY, this.radius, px, py);
  }

  hover(node, px, py) {
    if (node === null || !this.shown) {
      this.tooltip.hidden = true;
      return;
    }
    const { summary, colours } = this.shown;
    const lines = [`neuron ${node}`];
    if (colours) {
      if (this.ranked?.values !== colours.values) {
        this.ranked = { values: colours.values, ranks: ranksOf(colours.values) };
      }
      const when = colours.final ? "" : colours.tau === this.graph.taus[this.step] ? ", converging"
        : `, at τ = ${colours.tau.toFixed(2)}`;
      lines.push(`centrality ${colours.values[node].toFixed(4)} (rank ${format(this.ranked.ranks[node])} of ` +
        `${format(this.graph.n)}${when})`);
    }
    if (summary) lines.push(`degree ${format(summary.degree[node])}`);
    lines.push(`L2 norm ${this.graph.norms[node].toFixed(3)}`);
    if (this.kept) lines.push(this.kept[node] ? "kept" : "pruned");
    if (this.communities && this.state.colouring === "community") lines.push(`community ${this.communities[node] + 1}`);
    this.tooltip.textContent = lines.join("\n");
    this.tooltip.hidden = false;
    this.tooltip.style.left = `${Math.min(px + 14, this.width - 190)}px`;
    this.tooltip.style.top = `${Math.max(py - 10, 0)}px`;
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

  // ------------------------------------------------------------ what a step shows

  // Advance the centrality of `step` until `deadline`, marking its end in the performance timeline.
  advance(step, deadline) {
    const layer = this.layer, finished = layer.powers.get(step)?.done;
    const done = layer.advance(step, deadline);
    if (done && !finished) {
      const power = layer.power(step);
      performance.measure(ANALYSIS_ENTRY, {
        start: layer.began.get(step), end: performance.now(), detail: {
          tau: this.graph.taus[step], edges: power.edges, iterations: power.iterations, converged: power.converged,
          workMs: layer.spent.get(step),
        },
      });
    }
    return done;
  }

  // What `step` shows: its counts (summary: null while the server's are awaited) and the colours (values, the
  // tau they belong to, whether final): the browser's own where it holds every edge above the step's tau, its
  // centrality as far as computed within `budget` ms; else the server's numbers for that tau once they have
  // come. Colours not yet computed at this tau are the last ones shown (labelled), or none.
  shownAt(step, budget) {
    const graph = this.graph, layer = this.layer, tau = graph.taus[step];
    const carried = this.shown ? this.shown.colours : null;
    if (holdsEvery(graph, step)) {
      const summary = layer.summary(step);
      if (budget > 0) this.advance(step, performance.now() + budget);
      const power = layer.powers.get(step);
      const colours = power && power.iterations > 0 ? { // a copy until final: the iteration reuses its vectors
        values: power.done ? power.centrality() : Float64Array.from(power.centrality()), tau, final: power.done,
        iterations: power.iterations, converged: power.converged,
      } : carried && { ...carried, final: false };
      return { summary, colours, source: "browser" };
    }
    if (this.server && this.server.step === step) {
      const { degree, components, largest, isolated, centrality, converged } = this.server;
      return {
        summary: { edges: graph.counts[step], degree, components, largest, isolated, complete: true },
        colours: { values: centrality, tau, final: true, converged }, source: "server",
      };
    }
    return { summary: null, colours: carried && { ...carried, final: false }, source: "waiting" };
  }

  drawnEdges(step) {
    return Math.min(edgesAbove(this.graph, step), DRAW_CAP);
  }

  // ------------------------------------------------------------ drawing

  scheduleDraw() {
    if (this.frameRequest) return;
    this.frameRequest = requestAnimationFrame(() => {
      this.frameRequest = 0;
      this.draw();
    });
  }

  draw() {
    if (!this.graph || !this.width || this.loading.hidden === false) return;
    try {
      this.drawFrame();
    } catch (error) { // out of memory, or a canvas this browser lacks: said on the stage, not thrown at the page
      this.fail(`This browser could not draw this graph (${error.message}). A smaller layer, or another ` +
        "browser, may work.");
    }
  }

  // A sentence on the stage instead of the graph, which is no longer drawn.
  fail(sentence) {
    this.loading.textContent = sentence;
    this.loading.hidden = false;
    clearTimeout(this.idleTimer);
  }

  drawFrame() {
    const started = performance.now();
    const step = this.step;
    const burst = this.pendingInput !== null && this.burst;
    const shown = this.shownAt(step, burst ? 0 : FRAME_BUDGET_MS);
    this.shown = { summary: shown.summary || this.shown?.summary || null, colours: shown.colours };
    const computed = performance.now();
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
    this.drawSelection(edgesAbove(this.graph, step));
    // While tau moves fast, a large layer's nodes stay as they were (the legend says so): edges and counts follow
    this.nodesHeld = burst && this.graph.n > HELD_NODES_ABOVE && this.nodesView === this.viewKey();
    if (this.nodesHeld) {
      clearTimeout(this.heldTimer);
      this.heldTimer = setTimeout(() => this.scheduleDraw(), BURST_MS); // drawn again once tau rests
    } else {
      this.rasterNodes(this.shown);
    }
    this.drawNodes();
    this.drawLegend();
    const finished = performance.now();
    this.writeStats(step, shown);
    this.writeStatus(step, shown);
    this.recordFrame({
      tau: this.graph.taus[step], edges: this.drawnEdges(step), input: this.pendingInput !== null,
      final: this.isFinal(step, shown), computeMs: computed - started, edgeMs: edgesDone - computed,
      nodeMs: finished - edgesDone,
    }, this.pendingInput ?? started);
    this.pendingInput = null;
    this.drawnAt = finished;
    this.prepare();
  }

  // Whether the nodes drawn are coloured by the final centrality of the tau of `step`.
  isFinal(step, shown) {
    const tau = this.graph.taus[step];
    if (this.nodesHeld && this.nodesTau !== tau) return false;
    return Boolean(shown.colours && shown.colours.final && shown.colours.tau === tau);
  }

  // A frame's timing, from its input (or the draw's start) to the next animation frame (rasterised by then).
  recordFrame(detail, start) {
    requestAnimationFrame(() => {
      if (++this.frameEntries > ENTRIES_KEPT) {
        performance.clearMeasures(FRAME_ENTRY);
        this.frameEntries = 1;
      }
      performance.measure(FRAME_ENTRY, { start, end: performance.now(), detail });
    });
  }

  viewKey() {
    return `${this.view.scale}|${this.view.x}|${this.view.y}|${this.width}|${this.height}|${this.ratio}`;
  }

  // While nothing happens, in slices of about SLICE_MS (so a key press or a click waits for one slice at most):
  // the centrality of the step shown (drawn again as it converges), then the edge bitmaps of the steps near it,
  // then their centralities, nearest first.
  prepare() {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.work(), IDLE_MS);
  }

  work() {
    const task = this.graph && !this.interacting && this.loading.hidden ? this.nextTask() : null;
    this.root.dataset.preparing = String(Boolean(task));
    if (!task) return;
    try {
      task(performance.now() + SLICE_MS);
    } catch (error) {
      this.fail(`This browser could not hold this graph's analysis (${error.message}).`);
      return;
    }
    this.idleTimer = setTimeout(() => this.work(), 0);
  }

  nextTask() {
    const here = this.step, layer = this.layer;
    if (layer.unfinished(here)) {
      return (deadline) => {
        if (this.advance(here, deadline) || performance.now() - this.drawnAt > PROGRESS_MS) this.scheduleDraw();
      };
    }
    const near = Array.from(this.graph.taus.keys()).filter((k) => Math.abs(k - here) <= PREPARED_STEPS)
      .sort((a, b) => Math.abs(a - here) - Math.abs(b - here));
    if (this.edges.key === this.viewKey()) {
      const length = near.map((k) => this.drawnEdges(k)).find((edges) => !this.edges.has(edges));
      if (length !== undefined) return (deadline) => this.edges.grow(length, deadline);
    }
    const step = near.find((k) => layer.unfinished(k));
    return step === undefined ? null : (deadline) => this.advance(step, deadline);
  }

  // The selected neuron's edges above tau (of `count` held), in red. Its edges are found once per neuron.
  drawSelection(count) {
    const node = this.selected;
    if (node === null || node === undefined || node >= this.graph.n) return;
    if (!this.selectedEdges || this.selectedEdges.node !== node) {
      const { rows, cols, m } = this.graph;
      const found = [];
      for (let e = 0; e < m; e++) if (rows[e] === node || cols[e] === node) found.push(e);
      this.selectedEdges = { node, edges: Uint32Array.from(found) };
    }
    const { rows, cols } = this.graph;
    const context = this.context;
    context.beginPath();
    for (const e of this.selectedEdges.edges) {
      if (e >= count) break;
      context.moveTo(this.screenX[rows[e]], this.screenY[rows[e]]);
      context.lineTo(this.screenX[cols[e]], this.screenY[cols[e]]);
    }
    context.strokeStyle = "rgba(214, 39, 40, 0.7)";
    context.lineWidth = 1.4;
    context.stroke();
  }

  // Nodes sized by degree and coloured by centrality (or community), stamped (nodes.js) by colour, the most
  // central last (on top), pruned neurons hollow, before the kept ones: into nodeSurface.
  rasterNodes({ summary, colours }) {
    const { n } = this.graph;
    const x = this.screenX, y = this.screenY;
    const degree = summary ? summary.degree : new Uint32Array(n);
    let top = 1;
    for (let i = 0; i < n; i++) top = Math.max(top, degree[i]);
    const base = Math.min(Math.max(110 / Math.sqrt(n), 2), this.state.labels ? 9 : 6) * Math.sqrt(this.view.scale);
    if (!this.radius || this.radius.length !== n) this.radius = new Float32Array(n);
    for (let i = 0; i < n; i++) this.radius[i] = base * (0.55 + 0.9 * Math.sqrt(degree[i] / top));
    const bins = colourBins(n, colours && colours.values,
      this.state.colouring === "community" ? this.communities : null);
    this.range = bins.range;
    const pruned = [];
    const groups = bins.colours.map(() => []);
    for (let i = 0; i < n; i++) {
      if (this.kept && !this.kept[i]) pruned.push(i);
      else groups[bins.of[i]].push(i);
    }
    const ratio = this.ratio, raster = this.nodeRaster, radius = this.radius;
    raster.clear(this.canvas.width, this.canvas.height);
    const hollow = rgba(PRUNED_COLOUR), outline = n <= 1500 ? OUTLINE : null;
    for (const i of pruned) raster.ring(x[i] * ratio, y[i] * ratio, radius[i] * ratio, 1.3 * ratio, hollow);
    groups.forEach((members, bin) => {
      const colour = rgba(bins.colours[bin]);
      for (const i of members) {
        raster.disc(x[i] * ratio, y[i] * ratio, radius[i] * ratio, colour);
        if (outline) raster.ring(x[i] * ratio, y[i] * ratio, radius[i] * ratio, 0.6 * ratio, outline);
      }
    });
    if (this.nodeSurface?.width !== this.canvas.width || this.nodeSurface?.height !== this.canvas.height) {
      this.nodeSurface = new OffscreenCanvas(this.canvas.width, this.canvas.height);
    }
    this.nodeSurface.getContext("2d").putImageData(raster.image, 0, 0);
    this.nodesView = this.viewKey();
    this.nodesTau = this.graph.taus[this.step];
  }

  // The nodes rastered last, then the selected one's ring and (small graphs) each neuron's index.
  drawNodes() {
    const { n } = this.graph;
    const context = this.context, ratio = this.ratio;
    const x = this.screenX, y = this.screenY;
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.drawImage(this.nodeSurface, 0, 0);
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
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

  // The legend, drawn on the canvas so that the PNG carries it.
  drawLegend() {
    const community = this.state.colouring === "community" && this.communities;
    drawLegend(this.context, this.width, {
      community: community ? { tau: this.state.communityTau, sizes: communitySizes(this.communities) } : null,
      range: this.range, pending: !community && this.legendNote(), kept: Boolean(this.kept),
    });
  }

  // The legend's line on colours that are not yet this tau's final centrality, or null.
  legendNote() {
    const colours = this.shown && this.shown.colours, tau = this.graph.taus[this.step];
    if (this.nodesHeld && this.nodesTau !== tau) return `while τ moves: nodes of τ = ${this.nodesTau.toFixed(2)}`;
    if (!colours) return "not yet computed";
    if (colours.tau !== tau) return `of τ = ${colours.tau.toFixed(2)}, for now`;
    return colours.final ? null : `converging: step ${format(colours.iterations)}`;
  }

  writeStats(step, { summary }) {
    const graph = this.graph;
    const n = graph.n, edges = graph.counts[step], tau = graph.taus[step];
    const density = n > 1 ? edges / (n * (n - 1) / 2) : 0;
    this.tauOutput.textContent = tau.toFixed(2);
    const cells = [["neurons", format(n), n], ["edges", format(edges), edges],
      ["density", density.toFixed(4), density]];
    if (summary) {
      cells.push(["components", format(summary.components), summary.components],
        ["largest", format(summary.largest), summary.largest],
        ["isolated", format(summary.isolated), summary.isolated]);
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
  }

  // The notes on the stage (what the canvas does not hold, draw or know yet) and the root's status attributes.
  writeStatus(step, shown) {
    const graph = this.graph, tau = graph.taus[step], edges = graph.counts[step];
    const notes = [];
    if (!holdsEvery(graph, step)) {
      notes.push(`At τ = ${tau.toFixed(2)} the graph has ${format(edges)} edges; the browser holds the ` +
        `${format(graph.m)} strongest (the cap), so it draws those. ` + (shown.source === "server"
        ? "Components, sizes and colours are the server's, for this τ."
        : "Components, sizes and colours come from the server when you release the slider."));
    }
    if (this.drawnEdges(step) < edgesAbove(graph, step)) {
      notes.push(`Drawn: the ${format(this.drawnEdges(step))} strongest of these edges (every one counts in the ` +
        "numbers and colours); more would be a solid blot, and slow to draw.");
    }
    const colours = shown.colours, final = this.isFinal(step, shown);
    const held = this.nodesHeld && this.nodesTau !== tau; // the legend says so
    if (shown.source === "browser" && !final && !held) {
      notes.push(colours && colours.tau === tau
        ? `Eigenvector centrality at this τ: power iteration at step ${format(colours.iterations)} (of at most ` +
          `${format(graph.maxIter)}); the colours settle as it converges.`
        : "Eigenvector centrality at this τ is being computed: the colours are those of the τ shown before.");
    }
    if (final && colours.converged === false) {
      notes.push("Power iteration stopped at its step budget before converging: the colours use its last iterate.");
    }
    this.note.textContent = notes.join(" ");
    this.note.hidden = !notes.length;
    const status = this.root.dataset;
    status.frame = String(++this.frame);
    status.tau = tau.toFixed(2);
    status.payload = graph.key;
    status.source = shown.source;
    status.centrality = final ? "final" : !held && colours && colours.tau === tau ? "converging" : "elsewhere";
    status.selected = this.selected === null || this.selected === undefined ? "" : String(this.selected);
    status.held = String(graph.m);
  }
}

// The range of coordinate `axis` within Tukey's fences (one and a half interquartile ranges beyond the
// quartiles), never beyond the nodes' own range: all of it for fewer than 8 nodes, and all of it on a side where
// more than OUTLIERS_HELD of the nodes lie beyond the fence (a cluster, not a few stragglers, to be seen).
function robustRange(positions, axis, n) {
  if (!n) return [0, 1];
  const values = Array.from({ length: n }, (_, i) => positions[2 * i + axis]).sort((a, b) => a - b);
  if (n < 8) return [values[0], values[n - 1]];
  const q1 = values[Math.floor(0.25 * (n - 1))], q3 = values[Math.ceil(0.75 * (n - 1))], spread = 1.5 * (q3 - q1);
  const allowed = Math.max(1, Math.floor(OUTLIERS_HELD * n));
  const below = values.findIndex((v) => v >= q1 - spread);
  const above = n - 1 - values.findLastIndex((v) => v <= q3 + spread);
  return [below > allowed ? values[0] : Math.max(values[0], q1 - spread),
    above > allowed ? values[n - 1] : Math.min(values[n - 1], q3 + spread)];
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
