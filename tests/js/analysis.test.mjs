// The canvas's analysis (ui/components/graph_canvas/analysis.js) against the core's numbers on payloads the core
// wrote: counts at every tau step the payload holds, degree and eigenvector centrality at a few.
import test from "node:test";
import assert from "node:assert/strict";
import { decodePayload } from "../../ui/components/graph_canvas/payload.js";
import {
  LayerAnalysis, powerIteration, ranksOf, stepOf, stepSummaries,
} from "../../ui/components/graph_canvas/analysis.js";
import { layers, skip } from "./fixtures.mjs";

// Float64 here, float32 in the core: the iterates differ by rounding (at most 6e-8 on these fixtures). Where the
// L1 change crossed n * tol within that rounding the two would stop a step apart, and differ by about one
// step's change.
const SAME_STEP_TOLERANCE = 1e-6, NEXT_STEP_TOLERANCE = 1e-4;

test("the fixtures are there", { skip }, () => {
  assert.deepEqual(layers().map((layer) => layer.name),
    ["components", "edgeless", "lite0_head", "random", "random_budget"]);
});

for (const { name, bytes, expected } of layers()) {
  const graph = decodePayload(bytes);

  test(`${name}: counts at every tau step the payload holds are the core's`, () => {
    const summaries = stepSummaries(graph);
    assert.equal(graph.n, expected.n);
    assert.ok(expected.steps.length > 0);
    for (const core of expected.steps) {
      const { edges, components, largest, isolated, complete } = summaries[core.step];
      assert.deepEqual({ edges, components, largest, isolated, complete },
        { edges: core.edges, components: core.components, largest: core.largest, isolated: core.isolated,
          complete: true }, `${name} at tau ${core.tau}`);
    }
  });

  test(`${name}: degree and eigenvector centrality are the core's`, () => {
    const summaries = stepSummaries(graph);
    const checked = expected.steps.filter((core) => core.centrality);
    assert.ok(checked.length > 0);
    for (const core of checked) {
      const { edges, degree } = summaries[core.step];
      assert.deepEqual(Array.from(degree), core.degree, `${name} at tau ${core.tau}`);
      const power = powerIteration(graph, edges, degree);
      assert.equal(power.converged, core.converged, `${name} at tau ${core.tau}`);
      assert.ok(Math.abs(power.iterations - core.iterations) <= 1,
        `${name} at tau ${core.tau}: ${power.iterations} steps, the core ${core.iterations}`);
      const worst = Math.max(...core.centrality.map((value, i) => Math.abs(value - power.x[i])));
      const tolerance = power.iterations === core.iterations ? SAME_STEP_TOLERANCE : NEXT_STEP_TOLERANCE;
      assert.ok(worst <= tolerance, `${name} at tau ${core.tau}: differs by ${worst}`);
    }
  });

  test(`${name}: the centrality found a slice at a time is the one found at once`, () => {
    const layer = new LayerAnalysis(graph);
    const step = expected.steps.filter((core) => core.centrality).at(-1).step;
    let slices = 0;
    while (!layer.advance(step, -Infinity)) slices += 1; // a deadline already past: one iteration a slice
    const power = layer.power(step);
    const once = powerIteration(graph, layer.summary(step).edges, layer.summary(step).degree);
    assert.equal(slices + 1, power.iterations);
    assert.deepEqual(Array.from(power.centrality()), Array.from(once.x));
    assert.ok(layer.spent.get(step) >= 0 && layer.began.has(step));
    assert.equal(layer.unfinished(step), false);
  });
}

test("a graph of no edge gives every node 1/sqrt(n), in two steps (from 1/n)", () => {
  const graph = { n: 4, m: 0, rows: new Uint16Array(0), cols: new Uint16Array(0), weights: new Float32Array(0),
    taus: [0], counts: [0], maxIter: 100, tol: 1e-6 };
  const [summary] = stepSummaries(graph);
  assert.deepEqual([summary.components, summary.largest, summary.isolated], [4, 1, 4]);
  const power = powerIteration(graph, 0, summary.degree);
  assert.deepEqual(Array.from(power.x), [0.5, 0.5, 0.5, 0.5]);
  assert.equal(power.iterations, 2);
});

test("where the payload holds only the strongest edges, the step's counts are marked incomplete", () => {
  const graph = { n: 3, m: 1, rows: new Uint16Array([0]), cols: new Uint16Array([1]), weights: new Float32Array([0.9]),
    taus: [0.1, 0.5], counts: [3, 1], maxIter: 100, tol: 1e-6 };
  const summaries = stepSummaries(graph);
  assert.deepEqual(summaries.map((s) => [s.edges, s.complete]), [[1, false], [1, true]]);
  const layer = new LayerAnalysis(graph);
  assert.equal(layer.unfinished(0), false); // the browser does not compute what it cannot know
  assert.equal(layer.unfinished(1), true);
});

test("ranks: 1 for the largest, ties to the lower index", () => {
  assert.deepEqual(Array.from(ranksOf([0.2, 0.5, 0.2, 0.1])), [2, 1, 3, 4]);
});

test("the tau step nearest a tau", () => {
  const taus = [0, 0.01, 0.02, 0.03];
  assert.deepEqual([stepOf(taus, 0.02), stepOf(taus, 0.0149), stepOf(taus, 7), stepOf(taus, -1)], [2, 1, 3, 0]);
});
