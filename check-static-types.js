// `npm run check:static`: TypeScript's check of the browser modules (tsconfig.json: the
// JavaScript of iavicenne_ext/static/ with its JSDoc, strict, nothing emitted), as
// `tsc --project tsconfig.json` runs it, less what it says of static/vendor/. Those are
// yjs and lib0 as npm publishes them (imported by shared.js, so in the program; their
// sha512 pinned and compared by `python -m iavicenne_ext.vendor_js --check`): not ours to
// change, and TypeScript checks every JavaScript file of a program or none.
import path from "node:path";
import ts from "typescript";

const VENDOR = path.resolve("iavicenne_ext/static/vendor") + path.sep;

const host = { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (diagnostic) => report([diagnostic]) };
const config = ts.getParsedCommandLineOfConfigFile("tsconfig.json", {}, host);
if (!config) process.exit(2);
const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
const findings = [...config.errors, ...ts.getPreEmitDiagnostics(program)].filter(
  (diagnostic) => !diagnostic.file || !path.resolve(diagnostic.file.fileName).startsWith(VENDOR),
);
report(findings);
console.log(`check:static: ${findings.length} finding(s) in ${config.fileNames.length} files (static/vendor/ aside)`);
process.exit(findings.length ? 1 : 0);

function report(diagnostics) {
  if (!diagnostics.length) return;
  const format = { getCanonicalFileName: (name) => name, getCurrentDirectory: ts.sys.getCurrentDirectory, getNewLine: () => "\n" };
  console.error(ts.formatDiagnosticsWithColorAndContext(diagnostics, format));
}
