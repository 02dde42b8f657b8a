// The nodes, drawn pixel by pixel into a buffer (an ImageData's pixels) and put on the canvas in one piece: each
// node an anti-aliased disc (or ring) stamped from a mask made once per radius. A Canvas 2D path of 14,336 arcs
// took 38 ms to rasterise in software (chromium --disable-gpu, bench/bench_app.py); stamps take a few.

const STEPS_PER_PIXEL = 4; // stamps are made for radii in quarter pixels
const STAMPS_KEPT = 512;

// A colour as [r, g, b, a] (0..255, alpha 0..1) from "#rrggbb", "rgb(r, g, b)" or "rgba(r, g, b, a)".
export function rgba(css) {
  if (css.startsWith("#")) {
    const value = parseInt(css.slice(1), 16);
    return [(value >> 16) & 255, (value >> 8) & 255, value & 255, 1];
  }
  const [r, g, b, a = 1] = css.slice(css.indexOf("(") + 1, -1).split(",").map(Number);
  return [r, g, b, a];
}

// How much of each pixel of a (2 half + 1)^2 square centred on its middle pixel lies within `outer` of the
// centre and beyond `inner` (a disc when inner is 0, else a ring), from each pixel centre's distance: a pixel
// half in, half out is half covered.
export function coverage(outer, inner) {
  const half = Math.ceil(outer), size = 2 * half + 1;
  const cover = new Float32Array(size * size);
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      const distance = Math.hypot(px - half, py - half);
      const within = Math.min(Math.max(outer - distance + 0.5, 0), 1);
      cover[py * size + px] = inner > 0 ? within - Math.min(Math.max(inner - distance + 0.5, 0), 1) : within;
    }
  }
  return { half, size, cover };
}

export class NodeRaster {
  constructor() {
    this.stamps = new Map();
    this.width = 0;
    this.height = 0;
  }

  // A transparent buffer of width x height pixels (a new one when the size changes).
  clear(width, height) {
    if (width !== this.width || height !== this.height) {
      this.width = width;
      this.height = height;
      this.image = typeof ImageData === "undefined" ? { data: new Uint8ClampedArray(width * height * 4) }
        : new ImageData(width, height);
    }
    this.image.data.fill(0);
  }

  stamp(outer, inner) {
    const key = `${Math.round(outer * STEPS_PER_PIXEL)}|${Math.round(inner * STEPS_PER_PIXEL)}`;
    let stamp = this.stamps.get(key);
    if (!stamp) {
      if (this.stamps.size >= STAMPS_KEPT) this.stamps.clear(); // zoomed far in: many sizes
      stamp = coverage(Math.round(outer * STEPS_PER_PIXEL) / STEPS_PER_PIXEL,
        Math.round(inner * STEPS_PER_PIXEL) / STEPS_PER_PIXEL);
      this.stamps.set(key, stamp);
    }
    return stamp;
  }

  // A disc of radius r (pixels) at (x, y) in `colour` ([r, g, b, a]), over what is there.
  disc(x, y, r, colour) {
    this.paint(x, y, this.stamp(r, 0), colour);
  }

  // A ring of `width` pixels centred on the circle of radius r at (x, y).
  ring(x, y, r, width, colour) {
    this.paint(x, y, this.stamp(r + width / 2, Math.max(r - width / 2, 0)), colour);
  }

  // Source-over blending of `colour` through the stamp's coverage, clipped to the buffer; the buffer holds
  // colours not premultiplied by alpha (as ImageData does).
  paint(x, y, { half, size, cover }, [red, green, blue, alpha]) {
    const data = this.image.data, width = this.width, height = this.height;
    const left = Math.round(x) - half, top = Math.round(y) - half;
    const fromX = Math.max(0, -left), toX = Math.min(size, width - left);
    const fromY = Math.max(0, -top), toY = Math.min(size, height - top);
    for (let py = fromY; py < toY; py++) {
      let at = ((top + py) * width + left + fromX) * 4;
      for (let px = fromX; px < toX; px++, at += 4) {
        const source = alpha * cover[py * size + px];
        if (source === 0) continue;
        const below = data[at + 3] / 255 * (1 - source);
        const out = source + below;
        data[at] = (red * source + data[at] * below) / out;
        data[at + 1] = (green * source + data[at + 1] * below) / out;
        data[at + 2] = (blue * source + data[at + 2] * below) / out;
        data[at + 3] = out * 255;
      }
    }
  }
}
