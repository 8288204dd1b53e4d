/**
 * The CLI ships bundled (dist/bin.js and the chunks it imports, dist/chunks/, built by
 * `npm run build`), so that it starts without loading hundreds of modules; the library (`import "runledger"`,
 * dist/index.js) stays tsc's modules, unbundled. The loop's watchdog script is a file
 * of its own beside them.
 */
import { describe, expect, it } from "vitest"
import { existsSync, readFileSync } from "node:fs"
import { builtinModules } from "node:module"
import { join } from "node:path"
import { REPO, runCli } from "../support/cli.js"

const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as {
  version: string
  bin: Record<string, string>
  dependencies: Record<string, string>
}

/** Module specifiers a file imports statically or dynamically, or requires. */
const specifiers = (file: string): Array<string> => {
  const text = readFileSync(file, "utf8")
  const found = new Set<string>()
  // Import statements (at the start of a line in emitted code), dynamic imports and require calls.
  const patterns = [/^\s*(?:import|export)\b[^;"']*?\bfrom\s*"([^"]+)"/gm, /^\s*import\s*"([^"]+)"/gm, /\bimport\(\s*"([^"]+)"\s*\)/g, /(?:^|[^\w$.])(?:__)?require\(\s*"([^"]+)"\s*\)/gm]
  for (const re of patterns) for (const m of text.matchAll(re)) found.add(m[1]!)
  // Only what reads as a module specifier (the bundle's strings hold all kinds of text).
  return [...found].filter((s) => /^(node:|\.{1,2}\/|@?[a-z0-9][\w.-]*)/.test(s) && !/\s/.test(s))
}

describe("the CLI bundle", () => {
  it("`runledger` is dist/bin.js (and its chunks), importing only node builtins and the native/lazy packages", () => {
    expect(pkg.bin["runledger"]).toBe("dist/bin.js")
    const imports = specifiers(join(REPO, "dist/bin.js"))
    // The only relative imports are the chunks of commands loaded on demand (serve, mcp).
    const relative = imports.filter((s) => s.startsWith("."))
    for (const r of relative) {
      expect(r).toMatch(/^\.\/chunks\/[\w-]+\.js$/)
      expect(existsSync(join(REPO, "dist", r))).toBe(true)
    }
    // Not imports: ajv names its runtime helpers as `require("ajv/dist/runtime/…")` text for its
    // standalone code generation only (`equal.code = …`; the helpers are bundled), and nunjucks
    // requires chokidar only for a file loader with `watch: true`, which templates here never use.
    const packages = imports.filter((s) =>
      !s.startsWith("node:") && !s.startsWith(".") && !builtinModules.includes(s) && !s.startsWith("ajv/dist/runtime/") &&
      s !== "chokidar"
    )
    // Only what the bundle leaves out on purpose, each a declared dependency.
    for (const p of packages) {
      expect(["better-sqlite3", "better-sqlite3-multiple-ciphers", "recheck", "synckit"]).toContain(p)
      expect(Object.keys(pkg.dependencies)).toContain(p)
    }
  })

  it("prints the package's version and runs a command", () => {
    const v = runCli(["--version"])
    expect(v.status, v.stderr).toBe(0)
    expect(v.stdout.trim()).toBe(pkg.version)
    const validate = runCli(["validate", "-s", "examples/demo/settings.yaml"])
    expect(validate.status, validate.stderr).toBe(0)
    expect(validate.stdout).toContain("valid")
  })

  it("the library stays unbundled: dist/index.js imports its own modules; the watchdog script is there", () => {
    const imports = specifiers(join(REPO, "dist/index.js"))
    expect(imports.filter((s) => s.startsWith("./")).length).toBeGreaterThan(5)
    expect(imports).not.toContain("./bin.js")
    expect(existsSync(join(REPO, "dist/loop/watchdog-process.js"))).toBe(true)
    expect(existsSync(join(REPO, "dist/bin-modules.js"))).toBe(true)
  })
})
