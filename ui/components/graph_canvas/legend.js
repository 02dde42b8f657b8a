// Colours and the legend: the centrality's viridis scale (in COLOUR_BINS bins), the communities' palette, and
// the legend drawn on the canvas (so that the PNG carries it).

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f"];
const OTHER_COMMUNITY = "#c7ccd1";
const UNKNOWN_COLOUR = "#9aa5b1"; // no centrality yet
export const PRUNED_COLOUR = "#8a939c";
export const LEGEND_WIDTH = 190;
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];
const COLOUR_BINS = 64;
const INK = "#1b2631";

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

// Each node's colour, as a bin of `colours`: its community (the first PALETTE.length, then one colour for the
// rest) when `communities` is given; else its value's place between the lowest and the highest of `values`
// (`range`); else (no values yet) one grey.
export function colourBins(n, values, communities) {
  const of = new Uint16Array(n);
  if (communities) {
    for (let i = 0; i < n; i++) of[i] = Math.min(communities[i], PALETTE.length);
    return { of, colours: [...PALETTE, OTHER_COMMUNITY], range: null };
  }
  if (!values) return { of, colours: [UNKNOWN_COLOUR], range: null };
  let low = Infinity, high = -Infinity;
  for (let i = 0; i < n; i++) {
    low = Math.min(low, values[i]);
    high = Math.max(high, values[i]);
  }
  const span = high - low;
  for (let i = 0; i < n; i++) {
    of[i] = span > 0 ? Math.round((values[i] - low) / span * (COLOUR_BINS - 1)) : COLOUR_BINS >> 1;
  }
  return { of, colours: VIRIDIS_BINS, range: [low, high] };
}

// How many neurons each community colour stands for: [label, count], by label (PALETTE.length: the rest).
export function communitySizes(communities) {
  const sizes = new Map();
  for (const label of communities) {
    const shown = Math.min(label, PALETTE.length);
    sizes.set(shown, (sizes.get(shown) || 0) + 1);
  }
  return [...sizes.entries()].sort((a, b) => a[0] - b[0]);
}

export function format(value, digits = 0) {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

// An end of the centrality's range as the legend writes it: 3 significant digits, and 0 for a value that is 0 but
// for rounding (an isolated neuron's centrality is 1e-49 beside a largest of 0.3).
export function rangeLabel(value, range) {
  const largest = Math.max(Math.abs(range[0]), Math.abs(range[1]));
  return Math.abs(value) <= 1e-6 * largest ? "0" : value.toPrecision(3);
}

export function circle(context, x, y, r) {
  context.moveTo(x + r, y);
  context.arc(x, y, r, 0, 2 * Math.PI);
}

// The legend at the top right of a `width`-wide stage: `community` ({tau, sizes}) or the centrality's `range`
// with a `pending` line (colours not yet final) or none; what size means; filled/hollow when `kept`.
export function drawLegend(context, width, { community, range, pending, kept }) {
  const x = width - LEGEND_WIDTH - 10;
  let height = community ? 52 + 16 * community.sizes.length : 74 + (pending ? 16 : 0);
  if (kept) height += 34;
  context.fillStyle = "rgba(255, 255, 255, 0.88)";
  context.strokeStyle = "#d5dbe1";
  context.lineWidth = 1;
  context.beginPath();
  context.rect(x, 10, LEGEND_WIDTH, height);
  context.fill();
  context.stroke();
  context.fillStyle = INK;
  context.font = "12px sans-serif";
  context.textAlign = "left";
  const row = community ? communityRows(context, x, community) : centralityRows(context, x, range, pending);
  if (kept) keptRow(context, x, row + 18);
}

function communityRows(context, x, { tau, sizes }) {
  context.fillText("Louvain communities", x + 8, 27);
  context.fillText(`of the graph at τ = ${tau.toFixed(2)}`, x + 8, 42);
  let row = 44;
  for (const [label, size] of sizes) {
    row += 16;
    context.fillStyle = label < PALETTE.length ? PALETTE[label] : OTHER_COMMUNITY;
    context.beginPath();
    circle(context, x + 14, row - 4, 5);
    context.fill();
    context.fillStyle = INK;
    context.fillText(label < PALETTE.length ? `${label + 1}: ${format(size)} neurons` : `others: ${format(size)}`,
      x + 26, row);
  }
  return row;
}

function centralityRows(context, x, range, pending) {
  context.fillText("eigenvector centrality", x + 8, 27);
  const gradient = context.createLinearGradient(x + 8, 0, x + LEGEND_WIDTH - 8, 0);
  VIRIDIS.forEach((colour, i) => gradient.addColorStop(i / (VIRIDIS.length - 1), colour));
  context.fillStyle = range ? gradient : UNKNOWN_COLOUR;
  context.fillRect(x + 8, 34, LEGEND_WIDTH - 16, 12);
  context.fillStyle = INK;
  context.font = "11px sans-serif";
  context.fillText(range ? rangeLabel(range[0], range) : "…", x + 8, 60);
  context.textAlign = "right";
  context.fillText(range ? rangeLabel(range[1], range) : "…", x + LEGEND_WIDTH - 8, 60);
  context.textAlign = "left";
  let row = 74;
  if (pending) {
    context.fillText(pending, x + 8, row);
    row += 16;
  }
  context.fillText("size: degree at this τ", x + 8, row);
  return row;
}

function keptRow(context, x, row) {
  context.fillStyle = "#3b528b";
  context.beginPath();
  circle(context, x + 14, row - 4, 5);
  context.fill();
  context.fillStyle = INK;
  context.fillText("kept", x + 26, row);
  context.beginPath();
  circle(context, x + 84, row - 4, 5);
  context.strokeStyle = PRUNED_COLOUR;
  context.lineWidth = 1.3;
  context.stroke();
  context.fillText("pruned", x + 96, row);
}
