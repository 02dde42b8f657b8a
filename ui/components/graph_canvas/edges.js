// The edges, drawn once per tau step and view into bitmaps (OffscreenCanvas), so that moving tau copies a bitmap
// or adds only the edges between two steps.

const MAX_PATH_SEGMENTS = 4096; // long paths rasterise slowly; chunks of this many segments do not
const BITMAP_BYTES = 160e6; // memory for cached edge bitmaps
const EDGE_RGB = "60, 80, 100";

// Edges [from, to) of `graph` between the points (x[i], y[i]), in bands whose opacity falls with the edge's
// rank: the strongest edges are the darkest, and the many weak ones added at a low tau stay a light haze.
// `labelled` (a small graph) draws each edge with a width by its similarity.
export function strokeEdges(context, graph, x, y, labelled, from, to) {
  const { rows, cols, weights, n } = graph;
  if (labelled) {
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

// The edges as bitmaps, one per tau step (the edges above a tau are a prefix of the list), each rasterised
// once on an OffscreenCanvas and made from the bitmap of the step above it plus the edges between the two,
// the steps near the tau shown made in the background: a step back is a copy, a step on draws only the new
// edges. Bitmaps far from the tau shown go first when memory runs short. A new view (zoom, pan,
// size) starts afresh.
export class EdgeLayer {
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
    if (typeof OffscreenCanvas === "undefined") throw new Error("it has no OffscreenCanvas");
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
    while (!this.bitmaps.has(length)) this.grow(length, Infinity);
    this.evict(length);
    const bitmap = this.bitmaps.get(length);
    this.last = { bitmap, view: { ...this.view.view } };
    return bitmap;
  }

  // Towards `target` (a step's length) from the longest bitmap below it: with no deadline, all the way (a frame
  // waits for it); else in the background, to the next step's length or as far as `deadline` allows (a bitmap
  // in between is kept until it is grown further).
  grow(target, deadline) {
    let from = 0;
    for (const length of this.bitmaps.keys()) if (length <= target && length > from) from = length;
    const now = deadline === Infinity;
    const next = now ? target : this.chain.find((length) => length > from);
    const budget = now ? Infinity : Math.max(500, Math.floor((deadline - performance.now()) / this.msPerEdge));
    const to = Math.min(next, target, from + budget);
    const context = this.surface.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, this.surface.width, this.surface.height);
    context.drawImage(this.bitmaps.get(from), 0, 0);
    const ratio = this.view.ratio;
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    const began = performance.now();
    const { graph, screenX, screenY, state } = this.view;
    strokeEdges(context, graph, screenX, screenY, Boolean(state.labels), from, to);
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
