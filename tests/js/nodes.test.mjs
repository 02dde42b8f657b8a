// The nodes' pixels (nodes.js): anti-aliased stamps blended over what is there, clipped to the buffer.
import test from "node:test";
import assert from "node:assert/strict";
import { NodeRaster, coverage, rgba } from "../../ui/components/graph_canvas/nodes.js";

const sum = (array) => array.reduce((total, value) => total + value, 0);

test("a disc's stamp covers about pi r^2 pixels, a ring its annulus, and is symmetric", () => {
  for (const r of [0.75, 2, 5.5, 30]) {
    const { half, dx, dy, cover } = coverage(r, 0);
    assert.equal(half, Math.ceil(r));
    assert.ok(Math.abs(sum(cover) - Math.PI * r * r) < 0.02 * Math.PI * r * r + 0.5, `r = ${r}: ${sum(cover)}`);
    assert.deepEqual(Array.from(cover), Array.from(cover).reverse());
    assert.deepEqual(Array.from(dx), Array.from(dx).reverse().map((v) => 0 - v));
    assert.ok(dy.every((v) => Math.abs(v) <= half) && cover.every((c) => c > 0 && c <= 1));
  }
  const ring = coverage(5.5, 4.5).cover;
  assert.ok(Math.abs(sum(ring) - Math.PI * (5.5 ** 2 - 4.5 ** 2)) < 1.5);
});

test("colours parse from CSS, and a node is blended over what is there", () => {
  assert.deepEqual(rgba("#ff8000"), [255, 128, 0, 1]);
  assert.deepEqual(rgba("rgb(1, 2, 3)"), [1, 2, 3, 1]);
  assert.deepEqual(rgba("rgba(255, 255, 255, 0.8)"), [255, 255, 255, 0.8]);
  const raster = new NodeRaster();
  raster.clear(9, 9);
  raster.disc(4, 4, 2, [200, 0, 0, 1]);
  const centre = (4 * 9 + 4) * 4, data = raster.image.data;
  assert.deepEqual(Array.from(data.subarray(centre, centre + 4)), [200, 0, 0, 255]);
  assert.equal(data[3], 0); // a corner: untouched
  raster.disc(4, 4, 1, [0, 0, 200, 0.5]); // half-transparent blue over opaque red
  assert.deepEqual(Array.from(data.subarray(centre, centre + 4)), [100, 0, 100, 255]);
  raster.clear(9, 9);
  assert.equal(sum(data), 0);
});

test("a node partly or wholly off the buffer is clipped, not wrapped", () => {
  const raster = new NodeRaster();
  raster.clear(5, 5);
  raster.disc(-1, 2, 2, [0, 0, 0, 1]);
  raster.disc(40, 40, 3, [0, 0, 0, 1]);
  const alpha = (x, y) => raster.image.data[(y * 5 + x) * 4 + 3];
  assert.ok(alpha(0, 2) > 0 && alpha(4, 2) === 0 && alpha(4, 1) === 0); // nothing wrapped to the row's far end
});
