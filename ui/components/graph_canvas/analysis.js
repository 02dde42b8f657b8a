// What the canvas computes of the graph at one tau: plain functions of the payload's arrays, no DOM.
//
// The edges above a tau step are a prefix of the payload's list (strongest first): its length is the step's edge
// count, where the payload holds every edge. Degree, components (union-find) and eigenvector centrality are
// computed on that prefix with the core's rules: cprune_core/graph.summarize for the counts, and for the
// centrality cprune_core/centrality.power_iteration: x0 = 1/n, x_k = (I + A) x_(k-1) normalised to unit L2
// norm, stopping once the L1 change is below n * tol, or after maxIter steps. tests/js/ checks each against
// the core on payloads that cprune_core/graph_view.build_payload wrote.

// The tau step nearest to `tau` (the first of two equally near).
export function stepOf(taus, tau) {
  let best = 0;
  for (let k = 1; k < taus.length; k++) {
    if (Math.abs(taus[k] - tau) < Math.abs(taus[best] - tau)) best = k;
  }
  return best;
}

// Whether the payload holds every edge above the tau of `step` (the graph has at most `m` there).
export function holdsEvery(graph, step) {
  return graph.counts[step] <= graph.m;
}

// How many of the payload's edges lie above the tau of `step`: a prefix of its list.
export function edgesAbove(graph, step) {
  return Math.min(graph.counts[step], graph.m);
}

// Each tau step's counts, as cprune_core/graph.summarize counts them, in one pass over the edges: the steps from
// the highest tau down, each adding its edges to the degrees and to a union-find (by size, with path halving).
// Per step: the edges held above its tau, each node's degree, the number of connected components (an isolated
// node is one), the largest one's size, the isolated nodes, and whether these are the whole graph's (false
// where the graph has more edges above the step's tau than the payload holds: then they are the held edges').
export function stepSummaries(graph) {
  const { n, rows, cols, taus } = graph;
  const degree = new Uint32Array(n), parent = new Int32Array(n), size = new Uint32Array(n).fill(1);
  for (let i = 0; i < n; i++) parent[i] = i;
  const root = (i) => {
    while (parent[i] !== i) {
      parent[i] = parent[parent[i]];
      i = parent[i];
    }
    return i;
  };
  let joined = 0, linked = 0, largest = n ? 1 : 0, added = 0;
  const summaries = new Array(taus.length);
  for (let step = taus.length - 1; step >= 0; step--) {
    const edges = edgesAbove(graph, step);
    for (; added < edges; added++) {
      const a = rows[added], b = cols[added];
      if (degree[a]++ === 0) linked += 1;
      if (degree[b]++ === 0) linked += 1;
      let ra = root(a), rb = root(b);
      if (ra === rb) continue;
      if (size[ra] > size[rb]) [ra, rb] = [rb, ra];
      parent[ra] = rb;
      size[rb] += size[ra];
      largest = Math.max(largest, size[rb]);
      joined += 1;
    }
    summaries[step] = { edges, degree: degree.slice(), components: n - joined, largest, isolated: n - linked,
      complete: holdsEvery(graph, step) };
  }
  return summaries;
}

// The core's power iteration on the graph of the first `edges` edges, resumable: `run(deadline)` steps until
// it stops or performance.now() passes `deadline`, so a large graph's centrality is found a slice at a time
// and `x` can be drawn as it converges. A step costs the edges and the nodes that have one: the isolated nodes
// all keep the same value (they start equal and only the normalisation moves them), held once as `rest`.
export class PowerIteration {
  constructor(graph, edges, degree) {
    const { n } = graph;
    this.graph = graph;
    this.edges = edges;
    this.active = Uint32Array.from({ length: n }, (_, i) => i).filter((i) => degree[i] > 0);
    this.isolated = n - this.active.length;
    this.x = new Float64Array(n).fill(n ? 1 / n : 0);
    this.next = new Float64Array(n);
    this.rest = n ? 1 / n : 0;
    this.iterations = 0;
    this.converged = n === 0;
    this.done = n === 0;
  }

  run(deadline = Infinity) {
    const { rows, cols, weights, maxIter, tol, n } = this.graph;
    const { active, isolated, edges } = this;
    const count = active.length;
    while (!this.done) {
      const x = this.x, next = this.next;
      for (let k = 0; k < count; k++) next[active[k]] = x[active[k]];
      for (let e = 0; e < edges; e++) {
        const a = rows[e], b = cols[e], w = weights[e];
        next[a] += w * x[b];
        next[b] += w * x[a];
      }
      let squares = isolated * this.rest * this.rest;
      for (let k = 0; k < count; k++) squares += next[active[k]] * next[active[k]];
      const norm = Math.max(Math.sqrt(squares), Number.MIN_VALUE);
      const rest = this.rest / norm;
      let change = isolated * Math.abs(rest - this.rest);
      for (let k = 0; k < count; k++) {
        const i = active[k];
        next[i] /= norm;
        change += Math.abs(next[i] - x[i]);
      }
      this.x = next;
      this.next = x;
      this.rest = rest;
      this.iterations += 1;
      this.converged = change < n * tol;
      this.done = this.converged || this.iterations >= maxIter;
      if (performance.now() > deadline) break;
    }
    return this.done;
  }

  // Each node's value now: the last iterate (the centrality once `done`).
  centrality() {
    if (this.isolated) {
      const isActive = new Uint8Array(this.x.length);
      for (const i of this.active) isActive[i] = 1;
      for (let i = 0; i < this.x.length; i++) if (!isActive[i]) this.x[i] = this.rest;
    }
    return this.x;
  }
}

// The core's power iteration run to its end: { x, iterations, converged }.
export function powerIteration(graph, edges, degree) {
  const power = new PowerIteration(graph, edges, degree);
  power.run();
  return { x: power.centrality(), iterations: power.iterations, converged: power.converged };
}

// Each node's rank by `values`, 1 for the largest; ties keep the lower index first (as
// cprune_core.pruning.kept_indices).
export function ranksOf(values) {
  const order = Uint32Array.from({ length: values.length }, (_, i) => i)
    .sort((a, b) => values[b] - values[a] || a - b);
  const ranks = new Uint32Array(values.length);
  order.forEach((node, position) => { ranks[node] = position + 1; });
  return ranks;
}

// One layer's analyses, computed when first needed and kept: every step's counts (one pass), and each step's
// power iteration, advanced a slice at a time (`spent`: the milliseconds each step's took, `began`: when).
export class LayerAnalysis {
  constructor(graph) {
    this.graph = graph;
    this.summaries = null;
    this.powers = new Map(); // tau step -> PowerIteration
    this.spent = new Map(); // tau step -> ms of power iteration so far
    this.began = new Map(); // tau step -> when its power iteration began (performance.now())
  }

  summary(step) {
    if (!this.summaries) this.summaries = stepSummaries(this.graph);
    return this.summaries[step];
  }

  power(step) {
    let power = this.powers.get(step);
    if (!power) {
      const { edges, degree } = this.summary(step);
      power = new PowerIteration(this.graph, edges, degree);
      this.powers.set(step, power);
    }
    return power;
  }

  // Advance the power iteration of `step` until it stops or `deadline` passes; whether it has stopped.
  advance(step, deadline) {
    const power = this.power(step);
    if (power.done) return true;
    const began = performance.now();
    if (!this.began.has(step)) this.began.set(step, began);
    const done = power.run(deadline);
    this.spent.set(step, (this.spent.get(step) || 0) + performance.now() - began);
    if (done) power.next = null; // its spare vector, no longer needed
    return done;
  }

  // The steps whose counts the browser has (every step that holds every edge) and whose iteration is unfinished.
  unfinished(step) {
    return holdsEvery(this.graph, step) && !(this.powers.get(step)?.done);
  }
}
