// ESLint over the browser modules (iavicenne_ext/static/*.js; vendor/ is npm's yjs and
// lib0, checked against npm's tarballs instead) and these checks' own scripts.
// `npm run lint:static`; .ci/run runs it.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["iavicenne_ext/static/vendor/"] },
  {
    files: ["iavicenne_ext/static/*.js"],
    ...js.configs.recommended,
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: { ...globals.browser },
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      ...js.configs.recommended.rules,
      // a hook's or a callback's parameters are its signature, used or not
      "no-unused-vars": ["error", { args: "none" }],
      eqeqeq: ["error", "always"],
      "prefer-const": "error",
      "no-var": "error",
    },
  },
  {
    files: ["eslint.config.js", "check-static-types.js"],
    ...js.configs.recommended,
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node } },
  },
];
