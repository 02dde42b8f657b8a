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

// The pixels a disc of radius `outer` (a ring, beyond `inner`) covers, around its centre pixel: each one's offset
// (dx, dy) and how much of it is covered, from the pixel centre's distance (a pixel half in, half out is half
// covered); pixels not covered at all are left out.
export function coverage(outer, inner) {
  const half = Math.ceil(outer), dx = [], dy = [], cover = [];
  for (let y = -half; y <= half; y++) {
    for (let x = -half; x <= half; x++) {
      const distance = Math.hypot(x, y);
      const within = Math.min(Math.max(outer - distance + 0.5, 0), 1);
      const covered = inner > 0 ? within - Math.min(Math.max(inner - distance + 0.5, 0), 1) : within;
      if (covered <= 0) continue;
      dx.push(x);
      dy.push(y);
      cover.push(covered);
    }
  }
  return { half, dx: Int16Array.from(dx), dy: Int16Array.from(dy), cover: Float32Array.from(cover),
    opaque: Uint32Array.from(cover, (c) => (Math.round(c * 255) << 24) >>> 0) }; // an opaque colour's alpha bytes
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
      this.pixels = new Uint32Array(this.image.data.buffer);
    }
    this.pixels.fill(0);
  }

  stamp(outer, inner) {
    const outerSteps = Math.round(outer * STEPS_PER_PIXEL), innerSteps = Math.round(inner * STEPS_PER_PIXEL);
    const key = outerSteps * 65536 + innerSteps;
    let stamp = this.stamps.get(key);
    if (!stamp) {
      if (this.stamps.size >= STAMPS_KEPT) this.stamps.clear(); // zoomed far in: many sizes
      stamp = coverage(outerSteps / STEPS_PER_PIXEL, innerSteps / STEPS_PER_PIXEL);
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
  // colours not premultiplied by alpha (as ImageData does). A pixel still transparent, or covered opaquely, is
  // written whole (most are: nodes seldom overlap), the others blended.
  paint(x, y, { half, dx, dy, cover, opaque }, [red, green, blue, alpha]) {
    const data = this.image.data, pixels = this.pixels, width = this.width, height = this.height;
    const rgb = red | (green << 8) | (blue << 16); // a pixel's 4 bytes as one little-endian integer
    const cx = Math.round(x), cy = Math.round(y);
    if (cx + half < 0 || cy + half < 0 || cx - half >= width || cy - half >= height) return;
    const clipped = cx - half < 0 || cy - half < 0 || cx + half >= width || cy + half >= height;
    const centre = cy * width + cx;
    for (let k = 0; k < cover.length; k++) {
      if (clipped) {
        const px = cx + dx[k], py = cy + dy[k];
        if (px < 0 || py < 0 || px >= width || py >= height) continue;
      }
      const pixel = centre + dy[k] * width + dx[k], at = pixel * 4;
      const source = alpha * cover[k];
      if (source === 1 || data[at + 3] === 0) {
        pixels[pixel] = alpha === 1 ? (rgb | opaque[k]) >>> 0 : (rgb | (Math.round(source * 255) << 24)) >>> 0;
        continue;
      }
      const below = data[at + 3] / 255 * (1 - source);
      const out = source + below;
      data[at] = (red * source + data[at] * below) / out;
      data[at + 1] = (green * source + data[at + 1] * below) / out;
      data[at + 2] = (blue * source + data[at + 2] * below) / out;
      data[at + 3] = out * 255;
    }
  }
}
