// Builds the prebuilt extension into ../iavicenne_ext/labextension with @jupyterlab/builder.
// Which versions of the shared packages (@jupyterlab/*, @lumino/*) JupyterLab provides is
// read from @jupyterlab/core-meta, a devDependency pinned in package-lock.json, not from the
// JupyterLab of some Python environment: the same sources and lock file give the same
// build, byte for byte, wherever it runs (.ci/run compares its rebuild with the commit).
// `jupyter labextension build` hands this to jupyter-builder since JupyterLab 4.6; the
// builder is run here as that command runs it, with the core metadata where it expects it.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
// the builder reads <core path>/package.json; core-meta's own package.json is its npm manifest
const corePath = mkdtempSync(join(tmpdir(), "iavicenne-lab-core-"));
copyFileSync(join(root, "node_modules", "@jupyterlab", "core-meta", "core.package.json"), join(corePath, "package.json"));
const mode = process.argv.includes("--development") ? ["--development"] : [];
try {
  execFileSync(process.execPath, [join(root, "node_modules", "@jupyterlab", "builder", "lib", "build-labextension.js"), "--core-path", corePath, ...mode, root], {
    stdio: "inherit",
    cwd: root,
  });
} finally {
  rmSync(corePath, { recursive: true, force: true });
}
