// Decoding a payload (ui/components/graph_canvas/payload.js) as cprune_core/graph_view.decode_payload does.
import test from "node:test";
import assert from "node:assert/strict";
import { decodePayload, fromBase64, layerOf, readHeader } from "../../ui/components/graph_canvas/payload.js";
import { layers, skip } from "./fixtures.mjs";

test("a payload's arrays: positions, norms, the edges strongest first, each step's count a prefix", { skip }, () => {
  for (const { name, bytes, expected } of layers()) {
    const graph = decodePayload(bytes);
    assert.equal(graph.n, expected.n, name);
    assert.equal(graph.positions.length, 2 * graph.n);
    assert.equal(graph.norms.length, graph.n);
    assert.equal(graph.rows.length, graph.m);
    assert.equal(graph.bytes, bytes.length);
    for (let e = 1; e < graph.m; e++) assert.ok(graph.weights[e] <= graph.weights[e - 1], `${name}: edge ${e}`);
    for (let e = 0; e < graph.m; e++) assert.ok(graph.rows[e] < graph.cols[e] && graph.cols[e] < graph.n);
    for (const core of expected.steps) { // the edges above a tau are the first counts[step]
      const above = graph.weights.filter((w) => w > Math.fround(core.tau)).length;
      assert.equal(above, graph.counts[core.step], `${name} at tau ${core.tau}`);
    }
  }
});

test("a payload 4 bytes into its buffer is read from there", { skip }, () => {
  const [{ bytes }] = layers();
  const shifted = new Uint8Array(bytes.length + 4);
  shifted.set(bytes, 4);
  const graph = decodePayload(shifted.subarray(4));
  assert.deepEqual(Array.from(graph.norms), Array.from(decodePayload(bytes).norms));
});

test("bytes that are not a payload are refused", () => {
  assert.throws(() => readHeader(new TextEncoder().encode("NOPE\0\0\0\0")), /not a graph payload/);
  assert.throws(() => readHeader(new Uint8Array(3)), /not a graph payload/);
});

test("base64 arrays as Python sends them", () => {
  assert.deepEqual(Array.from(fromBase64("AQIDBA==", Uint8Array)), [1, 2, 3, 4]);
  assert.deepEqual(Array.from(fromBase64(Buffer.from(new Uint16Array([7, 300]).buffer).toString("base64"),
    Uint16Array)), [7, 300]);
});

test("a payload this browser cannot hold gives a sentence that says so, not an exception", { skip }, () => {
  const [{ bytes }] = layers();
  const held = layerOf(bytes);
  assert.equal(held.graph.n, decodePayload(bytes).n);
  const truncated = layerOf(bytes.slice(0, bytes.length - 8)); // its last array runs past the end
  assert.match(truncated.failed, /^This browser could not hold this layer's graph \(.* MB: .*\)\. A smaller layer/);
});
