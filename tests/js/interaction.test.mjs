// What interaction.js decides from an event, without a page: the neuron searched, the zoom, the node clicked.
import test from "node:test";
import assert from "node:assert/strict";
import { nearestNode, parseNeuron, zoomedView } from "../../ui/components/graph_canvas/interaction.js";

test("a searched neuron is an integer index of the graph", () => {
  assert.deepEqual(["7", " 0 ", "95"].map((text) => parseNeuron(text, 96)), [7, 0, 95]);
  for (const text of ["96", "-1", "1.5", "", " ", "seven", "1e1x", "Infinity"]) {
    assert.equal(parseNeuron(text, 96), null, text);
  }
});

test("zooming keeps the point under the pointer where it is, within the scale's bounds", () => {
  const view = { scale: 1, x: 10, y: 20 };
  const zoomed = zoomedView(view, 100, 50, -200);
  assert.ok(zoomed.scale > 1);
  for (const [axis, centre] of [["x", 100], ["y", 50]]) { // the screen point (centre) shows the same graph point
    assert.ok(Math.abs((centre - zoomed[axis]) / zoomed.scale - (centre - view[axis]) / view.scale) < 1e-9);
  }
  assert.equal(zoomedView(view, 0, 0, 1e6).scale, 0.5);
  assert.equal(zoomedView(view, 0, 0, -1e6).scale, 200);
});

test("a click picks the nearest node within its radius and 4 pixels, else none", () => {
  const xs = new Float32Array([0, 10, 40]), ys = new Float32Array([0, 0, 0]), radius = new Float32Array([2, 2, 6]);
  assert.equal(nearestNode(xs, ys, radius, 9, 1), 1);
  assert.equal(nearestNode(xs, ys, radius, 49, 0), 2); // within 6 + 4
  assert.equal(nearestNode(xs, ys, radius, 25, 0), null);
  assert.equal(nearestNode(new Float32Array(0), new Float32Array(0), null, 0, 0), null);
});
