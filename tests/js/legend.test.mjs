// Colours (legend.js): a node's colour is its centrality's place between the lowest and the highest.
import test from "node:test";
import assert from "node:assert/strict";
import { colourBins, communitySizes, rangeLabel } from "../../ui/components/graph_canvas/legend.js";

test("centrality colours span the scale from the lowest value to the highest", () => {
  const { of, colours, range } = colourBins(3, new Float64Array([0.1, 0.4, 0.7]), null);
  assert.deepEqual(Array.from(of), [0, 32, colours.length - 1]);
  assert.deepEqual(range, [0.1, 0.7]);
  assert.deepEqual(Array.from(colourBins(2, [0.3, 0.3], null).of), [32, 32]); // all equal: the middle
});

test("no centrality yet: one colour and no range; communities: their own colours, the rest one more", () => {
  const none = colourBins(2, null, null);
  assert.equal(none.colours.length, 1);
  assert.equal(none.range, null);
  const communities = colourBins(3, null, new Uint16Array([0, 12, 3]));
  assert.deepEqual(Array.from(communities.of), [0, 10, 3]);
  assert.deepEqual(communitySizes(new Uint16Array([0, 12, 3, 11, 0])), [[0, 2], [3, 1], [10, 2]]);
});

test("the legend's range reads 0 for a centrality that is 0 but for rounding, else 3 significant digits", () => {
  assert.equal(rangeLabel(1.11e-49, [1.11e-49, 0.312]), "0");
  assert.equal(rangeLabel(0.312, [1.11e-49, 0.312]), "0.312");
  assert.equal(rangeLabel(0.00123, [0.00123, 0.5]), "0.00123");
  assert.equal(rangeLabel(0, [0, 0]), "0");
});
