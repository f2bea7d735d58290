#!/usr/bin/env node
// Gives the npm `solc` (wasm) compiler the two CLI entry points that tools call:
//   solc --version
//   solc --standard-json [--base-path P] [--include-path P]... [--allow-paths ...]  (JSON on stdin)
// Imports not embedded in the input are resolved from the base/include paths and node_modules.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const args = process.argv.slice(2);
if (args.includes("--version")) {
  process.stdout.write(
    "solc, the solidity compiler commandline interface\nVersion: " + solc.version() + "\n",
  );
  process.exit(0);
}
if (!args.includes("--standard-json")) {
  process.stderr.write("solc-shim: only --version and --standard-json are supported\n");
  process.exit(2);
}

const roots = [process.cwd()];
for (let i = 0; i < args.length; i++) {
  if ((args[i] === "--base-path" || args[i] === "--include-path") && args[i + 1]) {
    roots.push(path.resolve(args[++i]));
  }
}
roots.push(path.resolve(__dirname, "..", "node_modules"));
roots.push(path.resolve(__dirname, ".."));

function findImports(importPath) {
  for (const root of roots) {
    const candidate = path.isAbsolute(importPath) ? importPath : path.join(root, importPath);
    if (fs.existsSync(candidate)) {
      return { contents: fs.readFileSync(candidate, "utf8") };
    }
  }
  return { error: "File not found: " + importPath };
}

const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const input = Buffer.concat(chunks).toString("utf8");
  process.stdout.write(solc.compile(input, { import: findImports }));
});
