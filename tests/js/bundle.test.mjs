// The modules as the app joins them (ui/graph_canvas.bundle, written by make_fixtures.py): one module that
// parses, runs its top level and exports the component's function, as Streamlit imports it.
import test from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { folder, skip } from "./fixtures.mjs";

test("the joined modules load as one module whose default export is the component", { skip }, async () => {
  const joined = await import(pathToFileURL(join(folder, "bundle.mjs")).href);
  assert.deepEqual(Object.keys(joined), ["default"]);
  assert.equal(typeof joined.default, "function");
});
