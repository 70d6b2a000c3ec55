// Builds the prebuilt extension into ../iavicenne_ext/labextension with @jupyterlab/builder,
// against the JupyterLab installed in the Python environment (its staging folder says
// which versions of the shared packages JupyterLab provides). `jupyter labextension build`
// did this; JupyterLab 4.6 hands that command to jupyter-builder, which wants to download
// @jupyterlab/core-meta, so the builder is run as that command used to run it.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const python = process.env.PYTHON || "python3";
const staging = execFileSync(
  python,
  ["-c", "import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), 'staging'))"],
  { encoding: "utf8" },
).trim();
const mode = process.argv.includes("--development") ? ["--development"] : [];
execFileSync(process.execPath, [`${root}node_modules/@jupyterlab/builder/lib/build-labextension.js`, "--core-path", staging, ...mode, root], {
  stdio: "inherit",
  cwd: root,
});
