// Merged by @jupyterlab/builder into its webpack configuration (package.json names it as
// jupyterlab.webpackConfig). Module ids by name, not by a hash of the module's identifier:
// the container entry's identifier holds the absolute path of lib/index.js, so hashed ids
// (and the file names hashed from them) differed from one checkout to another, and CI
// could not compare its rebuild with the committed build.
//
// `iavicenne-client` is the browser client the server serves, bundled from its one source
// (iavicenne_ext/static/iavicenne.js and the modules it imports); tsconfig.json maps the
// same name to its types (iavicenne.d.ts). scripts/stamp.mjs counts those files among the
// build's inputs.
const path = require("path");

module.exports = {
  resolve: {
    alias: {
      "iavicenne-client$": path.resolve(__dirname, "..", "iavicenne_ext", "static", "iavicenne.js"),
    },
  },
  optimization: {
    moduleIds: "named",
    chunkIds: "deterministic",
  },
};
