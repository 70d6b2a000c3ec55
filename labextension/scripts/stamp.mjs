// Records which sources the committed build was made from: the sha256 of every file the
// build reads (src/, style/, schema/, package.json, package-lock.json, tsconfig.json,
// webpack.config.js, and the browser client it bundles: the modules and types of
// ../iavicenne_ext/static/ and its package.json, less the demo page's own), written beside the build as
// build-inputs.json.
// tests/lab/test_labextension.py computes the same hash without Node.js and fails when the
// sources changed since (rebuild: `npm run build` in labextension/); .ci/run, with Node.js,
// rebuilds and compares the whole build.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const INPUTS = ["src", "style", "schema", "package.json", "package-lock.json", "tsconfig.json", "webpack.config.js"];

function files(path) {
  if (statSync(path).isDirectory()) return readdirSync(path).flatMap((name) => files(join(path, name)));
  return [path];
}

// the client's modules and types (webpack.config.js: `iavicenne-client`), not the demo page's
const CLIENT = join(root, "..", "iavicenne_ext", "static");
const client = readdirSync(CLIENT)
  .filter((name) => name === "package.json" || ((name.endsWith(".js") || name.endsWith(".d.ts")) && !name.startsWith("demo.")))
  .map((name) => join(CLIENT, name));

const paths = [...INPUTS.flatMap((input) => files(join(root, input))), ...client]
  .map((path) => relative(root, path).split(sep).join("/"))
  .sort();
const hash = createHash("sha256");
for (const path of paths) {
  hash.update(path + "\0");
  hash.update(readFileSync(join(root, path)));
  hash.update("\0");
}
const stamp = { sha256: hash.digest("hex"), files: paths };
writeFileSync(join(root, "..", "iavicenne_ext", "labextension", "build-inputs.json"), JSON.stringify(stamp, null, 2) + "\n");
console.log(`build-inputs.json: ${stamp.sha256} (${paths.length} files)`);
