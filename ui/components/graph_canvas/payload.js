// The layer's payload (cprune_core/graph_view.py), decoded: a header (JSON) and typed arrays over the payload's
// own bytes, never a copy per edge.
//
// Layout: "CPG1", a little-endian uint32 header length, the header (padded to 4 bytes), then each array of
// header.arrays at its 4-byte-aligned offset: positions float32 (x0, y0, x1, ...), norms float32, rows and
// cols uint16 (uint32 above 65,535 neurons), weights float32, the edges strongest first.

import { LayerAnalysis } from "./analysis.js";

export const PAYLOAD_MAGIC = "CPG1";
const TYPED = { float32: Float32Array, uint16: Uint16Array, uint32: Uint32Array };

// The header of a payload (Uint8Array), with `base`, the offset of its arrays; an Error when it is not one.
export function readHeader(bytes) {
  if (bytes.length < 8 || String.fromCharCode(...bytes.subarray(0, 4)) !== PAYLOAD_MAGIC) {
    throw new Error("not a graph payload");
  }
  const length = new DataView(bytes.buffer, bytes.byteOffset, 8).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
  header.base = 8 + length;
  return header;
}

// The graph a payload holds: n, m (edges held), taus and counts (the whole graph's edges above each tau step),
// maxIter and tol (the power iteration's), and its arrays. `bytes` must start on a 4-byte boundary of its
// buffer (a typed array needs it): pass a copy (`bytes.slice()`) of one that might not.
export function decodePayload(bytes) {
  const header = readHeader(bytes);
  const array = (name) => {
    const spec = header.arrays[name];
    return new TYPED[spec.dtype](bytes.buffer, bytes.byteOffset + header.base + spec.offset, spec.length);
  };
  return {
    key: header.key, bytes: bytes.length, n: header.n, m: header.m, taus: header.taus, counts: header.counts,
    maxIter: header.maxIter, tol: header.tol, positions: array("positions"), norms: array("norms"),
    rows: array("rows"), cols: array("cols"), weights: array("weights"),
  };
}

// The layer a payload holds, its analysis to be computed as needed (analysis.js); where this browser cannot
// hold it (its memory, or bytes that do not hold what their header says), {failed: a sentence saying so}.
export function layerOf(bytes) {
  try {
    return new LayerAnalysis(decodePayload(bytes));
  } catch (error) {
    return { failed: `This browser could not hold this layer's graph (${(bytes.length / 1e6).toFixed(1)} MB: ` +
      `${error.message}). A smaller layer or another browser may work.` };
  }
}

// A base64 string (a small array Python sends with each run) as a typed array of `Type`.
export function fromBase64(text, Type) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new Type(bytes.buffer);
}
