// Bundles the CLI into dist/bin.js (and the chunks it imports, dist/chunks/), so that
// `runledger` starts without resolving and loading hundreds of ES modules. Runs after `tsc -p tsconfig.build.json`
// (which emits the unbundled library, dist/index.js and its modules, for `import
// "runledger"`); tsc's own dist/bin.js is kept as dist/bin-modules.js, the same CLI
// unbundled, for comparison (`npm run bench -- startup`) and debugging.
//
// Left out of the bundle, loaded from node_modules at run time: the native SQLite
// bindings, and recheck (loaded on demand by the regex transform).
//
// Code that only some commands need and that they load with a dynamic import() (the
// explorer of `serve`, the MCP server of `mcp`) goes into chunks of its own,
// dist/chunks/*.js, read only when such a command runs: `runledger --version` does not
// parse them.
import * as esbuild from "esbuild"
import * as fs from "node:fs"

const entry = "dist/bin.js"
if (!fs.existsSync(entry)) {
  process.stderr.write(`bundle-cli: ${entry} is missing; run tsc -p tsconfig.build.json first\n`)
  process.exit(2)
}
fs.writeFileSync(
  "dist/bin-modules.js",
  fs.readFileSync(entry, "utf8").replace("//# sourceMappingURL=bin.js.map", "//# sourceMappingURL=bin-modules.js.map")
)
if (fs.existsSync("dist/bin.js.map")) fs.copyFileSync("dist/bin.js.map", "dist/bin-modules.js.map")

fs.rmSync("dist/chunks", { recursive: true, force: true })
await esbuild.build({
  entryPoints: { bin: "src/bin.ts" },
  outdir: "dist",
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: true,
  legalComments: "none",
  external: ["better-sqlite3", "better-sqlite3-multiple-ciphers", "recheck"],
  // A few dependencies are CommonJS and call require(); an ES module has none of its own.
  banner: { js: "import { createRequire as __runledgerRequire } from \"node:module\"; const require = __runledgerRequire(import.meta.url);" },
  logLevel: "warning"
})
fs.chmodSync(entry, 0o755)
