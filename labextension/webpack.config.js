// Merged by @jupyterlab/builder into its webpack configuration (package.json names it as
// jupyterlab.webpackConfig). Module ids by name, not by a hash of the module's identifier:
// the container entry's identifier holds the absolute path of lib/index.js, so hashed ids
// (and the file names hashed from them) differed from one checkout to another, and CI
// could not compare its rebuild with the committed build.
module.exports = {
  optimization: {
    moduleIds: "named",
    chunkIds: "deterministic",
  },
};
