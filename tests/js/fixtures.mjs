// The fixtures tests/js/make_fixtures.py writes (payloads of the core's build_payload, the core's numbers), read
// from the folder named by CPRUNE_CANVAS_FIXTURES. Without it the tests that need them are skipped, saying how
// to make them.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

export const folder = process.env.CPRUNE_CANVAS_FIXTURES;
export const skip = folder ? false
  : "no fixtures: run `PYTHONPATH=$PWD python tests/js/make_fixtures.py DIR`, then CPRUNE_CANVAS_FIXTURES=DIR";

// Each layer's payload bytes (a copy that starts a buffer: typed arrays need 4-byte alignment) and the core's numbers.
export function layers() {
  if (!folder) return [];
  return readdirSync(folder).filter((name) => name.endsWith(".payload")).sort().map((name) => {
    const stem = name.slice(0, -".payload".length);
    return { name: stem, bytes: new Uint8Array(readFileSync(join(folder, name))),
      expected: JSON.parse(readFileSync(join(folder, `${stem}.json`), "utf8")) };
  });
}
