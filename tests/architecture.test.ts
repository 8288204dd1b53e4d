/**
 * The import graph of src/: no cycles, and no import against the layering.
 *
 * Layers, lowest first: core → services → landscape → pipeline | loop → cli → entry
 * (src/bin.ts, src/index.ts); serve/ and mcp/ (the explorer and the MCP server, which
 * cli/ commands load) belong to the cli layer; dev/ (tools such as the fake LLM server)
 * sits beside pipeline and loop: it imports only core and itself, and only cli/ and the
 * entry points import it. A module imports from its own layer or a lower one, with
 * two further rules: pipeline and loop never import each other, and they import only
 * core and services — landscape is the adapter, wired in by cli/ and index.ts. The
 * entry points may import anything.
 *
 * The adapter is also kept out by package: the SQL client packages the Landscape is
 * built on are imported only in landscape/, cli/ and the entry points (and by the
 * database sink plugin, which writes to a user's database, not the Landscape).
 *
 * Every module specifier counts: `import`, `import type`, `export … from`, side-effect
 * imports and dynamic `import()`.
 */
import { describe, expect, it } from "vitest"
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative, resolve, sep } from "node:path"
import ts from "typescript"

const REPO = resolve(__dirname, "..")
const SRC = join(REPO, "src")

type Layer = "core" | "services" | "landscape" | "pipeline" | "loop" | "dev" | "cli" | "entry"

const LAYERS: ReadonlyArray<Layer> = ["core", "services", "landscape", "pipeline", "loop", "dev", "cli", "entry"]

/** What each layer may import (besides itself). */
const ALLOWED: Readonly<Record<Layer, ReadonlyArray<Layer>>> = {
  core: ["core"],
  services: ["core", "services"],
  landscape: ["core", "services", "landscape"],
  pipeline: ["core", "services", "pipeline"],
  loop: ["core", "services", "loop"],
  dev: ["core", "dev"],
  cli: ["core", "services", "landscape", "pipeline", "loop", "dev", "cli"],
  entry: LAYERS
}

const WHY: Partial<Record<Layer, string>> = {
  pipeline: "pipeline may import only core, services and itself (landscape is the adapter, wired in by cli/ and index.ts; loop is its sibling)",
  loop: "loop may import only core, services and itself (landscape is the adapter, wired in by cli/ and index.ts; pipeline is its sibling)"
}

/** A file's path relative to the repository, with forward slashes. */
const rel = (file: string) => relative(REPO, file).split(sep).join("/")

/** The CLI's other faces, loaded by its commands: the web explorer (serve/) and the MCP server (mcp/), in the cli layer. */
const FRONT_ENDS: ReadonlyArray<string> = ["serve", "mcp"]

/** The layer of a file under src/, or undefined for a file outside every layer. */
const layerOf = (srcRelative: string): Layer | undefined => {
  if (srcRelative === "bin.ts" || srcRelative === "index.ts") return "entry"
  const first = srcRelative.split("/")[0]!
  const top = FRONT_ENDS.includes(first) ? "cli" : first
  return LAYERS.includes(top as Layer) && top !== "entry" && srcRelative.includes("/") ? (top as Layer) : undefined
}

const walk = (dir: string): Array<string> =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return walk(path)
    return name.endsWith(".ts") && !name.endsWith(".d.ts") ? [path] : []
  })

/** `./x.js` → `./x.ts`, `./dir` → `./dir/index.ts`; undefined when nothing matches. */
const resolveSpecifier = (from: string, specifier: string): string | undefined => {
  const base = resolve(dirname(from), specifier)
  const candidates = [
    base.replace(/\.(m|c)?js$/, ".ts"),
    base,
    `${base}.ts`,
    join(base, "index.ts")
  ]
  return candidates.find((c) => c.endsWith(".ts") && existsSync(c) && statSync(c).isFile())
}

interface Graph {
  /** Repository-relative path → the repository-relative paths it imports. */
  readonly edges: ReadonlyMap<string, ReadonlyArray<string>>
  /** Repository-relative path → the packages it imports (`@effect/sql/SqlClient`, `node:fs`). */
  readonly packages: ReadonlyMap<string, ReadonlyArray<string>>
  /** Relative specifiers that name no file. */
  readonly unresolved: ReadonlyArray<string>
}

const readGraph = (): Graph => {
  const edges = new Map<string, Array<string>>()
  const packages = new Map<string, Array<string>>()
  const unresolved: Array<string> = []
  for (const file of walk(SRC).sort()) {
    const info = ts.preProcessFile(readFileSync(file, "utf8"), true, true)
    const targets = new Set<string>()
    const external = new Set<string>()
    for (const imported of info.importedFiles) {
      if (!imported.fileName.startsWith(".")) {
        external.add(imported.fileName)
        continue
      }
      const target = resolveSpecifier(file, imported.fileName)
      if (target === undefined) unresolved.push(`${rel(file)}: '${imported.fileName}' names no file`)
      else targets.add(rel(target))
    }
    edges.set(rel(file), [...targets].sort())
    packages.set(rel(file), [...external].sort())
  }
  return { edges, packages, unresolved }
}

/** Strongly connected components with more than one module (or a module importing itself). */
const cyclicComponents = (edges: ReadonlyMap<string, ReadonlyArray<string>>): Array<Array<string>> => {
  let index = 0
  const indices = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const onStack = new Set<string>()
  const components: Array<Array<string>> = []
  const visit = (v: string) => {
    indices.set(v, index)
    low.set(v, index)
    index++
    stack.push(v)
    onStack.add(v)
    for (const w of edges.get(v) ?? []) {
      if (!indices.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, indices.get(w)!))
      }
    }
    if (low.get(v) === indices.get(v)) {
      const component: Array<string> = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        component.push(w)
      } while (w !== v)
      if (component.length > 1 || (edges.get(v) ?? []).includes(v)) components.push(component.sort())
    }
  }
  for (const v of [...edges.keys()].sort()) if (!indices.has(v)) visit(v)
  return components
}

/** The shortest cycle through `start` inside `members`: `a → b → a`. */
const shortestCycle = (edges: ReadonlyMap<string, ReadonlyArray<string>>, members: ReadonlySet<string>, start: string): string => {
  const previous = new Map<string, string>()
  const queue = [start]
  while (queue.length > 0) {
    const v = queue.shift()!
    for (const w of edges.get(v) ?? []) {
      if (!members.has(w)) continue
      if (w === start) {
        const path = [start]
        for (let at: string | undefined = v; at !== undefined && at !== start; at = previous.get(at)) path.splice(1, 0, at)
        return [...path, start].join(" → ")
      }
      if (!previous.has(w) && w !== start) {
        previous.set(w, v)
        queue.push(w)
      }
    }
  }
  return `${start} (no cycle)`
}

/** Every cycle, described: one shortest cycle through each member of each cyclic component. */
const describeCycles = (edges: ReadonlyMap<string, ReadonlyArray<string>>): Array<string> =>
  cyclicComponents(edges).flatMap((component) => {
    const members = new Set(component)
    // One line per distinct cycle: a cycle found from each of its members is the same cycle.
    const seen = new Set<string>()
    const lines: Array<string> = []
    for (const member of component) {
      const cycle = shortestCycle(edges, members, member)
      const nodes = cycle.split(" → ").slice(0, -1)
      const first = nodes.indexOf([...nodes].sort()[0]!)
      const key = [...nodes.slice(first), ...nodes.slice(0, first)].join("|")
      if (seen.has(key)) continue
      seen.add(key)
      lines.push(cycle)
    }
    return lines
  })

/** Every import against the layering, described. */
const layerViolations = (edges: ReadonlyMap<string, ReadonlyArray<string>>): Array<string> => {
  const out: Array<string> = []
  for (const [from, targets] of edges) {
    const fromLayer = layerOf(from.replace(/^src\//, ""))
    if (fromLayer === undefined) {
      out.push(`${from}: outside every layer (put it in core, services, landscape, pipeline, loop, dev or cli)`)
      continue
    }
    for (const to of targets) {
      if (!to.startsWith("src/")) {
        out.push(`${from} → ${to}: src/ imports from outside src/`)
        continue
      }
      const toLayer = layerOf(to.replace(/^src\//, ""))
      if (toLayer === undefined || ALLOWED[fromLayer].includes(toLayer)) continue
      const why = WHY[fromLayer] ?? `${fromLayer} may import only ${ALLOWED[fromLayer].join(", ")}`
      out.push(`${from} → ${to}: ${fromLayer} imports ${toLayer}; ${why}`)
    }
  }
  return out.sort()
}

/** The SQL client packages the Landscape adapter is built on. */
const SQL_PACKAGES = /^(@effect\/sql(-[a-z0-9-]+)?|better-sqlite3(-multiple-ciphers)?)(\/|$)/

/** Modules below cli/ that may use a SQL client anyway, and why. */
const SQL_ALLOWED: Readonly<Record<string, string>> = {
  "src/pipeline/plugins/sinks/database.ts": "the database sink writes rows to a user's database"
}

/** Every SQL client import outside landscape/, cli/ and the entry points, described. */
const adapterImports = (packages: ReadonlyMap<string, ReadonlyArray<string>>): Array<string> => {
  const out: Array<string> = []
  for (const [from, names] of packages) {
    const layer = layerOf(from.replace(/^src\//, ""))
    if (layer === "landscape" || layer === "cli" || layer === "entry" || from in SQL_ALLOWED) continue
    for (const name of names) {
      if (SQL_PACKAGES.test(name)) {
        out.push(`${from} → ${name}: ${layer ?? "a module"} uses the SQL client directly; the Landscape is reached through ports in services/, implemented in landscape/`)
      }
    }
  }
  return out.sort()
}

const graph = readGraph()

const report = (title: string, lines: ReadonlyArray<string>) => {
  if (lines.length > 0) console.error(`${title} (${lines.length}):\n${lines.map((l) => `  ${l}`).join("\n")}`)
}

describe("the import graph of src/", () => {
  it("is read from every module: the entry points reach every layer", () => {
    expect(graph.edges.size).toBeGreaterThan(50)
    expect(graph.unresolved).toEqual([])
    const fromIndex = graph.edges.get("src/index.ts") ?? []
    for (const layer of ["core", "services", "landscape", "pipeline", "loop"]) {
      expect(fromIndex.some((f) => f.startsWith(`src/${layer}/`)), layer).toBe(true)
    }
    expect(graph.edges.get("src/bin.ts")).toContain("src/cli/main.ts")
  })

  it("has no import cycles", () => {
    const cycles = describeCycles(graph.edges)
    report("import cycles", cycles)
    expect(cycles).toEqual([])
  })

  it("imports only from its own layer or lower ones; pipeline and loop only core and services", () => {
    const violations = layerViolations(graph.edges)
    report("imports against the layering", violations)
    expect(violations).toEqual([])
  })

  it("leaves the process's V8 flags to the CLI: the library entry never reaches cli/heap.ts", () => {
    const reached = new Set<string>()
    const visit = (file: string) => {
      if (reached.has(file)) return
      reached.add(file)
      for (const next of graph.edges.get(file) ?? []) visit(next)
    }
    visit("src/index.ts")
    expect(reached.size).toBeGreaterThan(50)
    expect(reached.has("src/cli/heap.ts")).toBe(false)
    expect([...graph.edges].filter(([, to]) => to.includes("src/cli/heap.ts")).map(([from]) => from).length).toBeGreaterThan(0)
  })

  it("uses the SQL client only in landscape/, cli/ and the entry points", () => {
    const leaks = adapterImports(graph.packages)
    report("SQL client imports outside the adapter", leaks)
    expect(leaks).toEqual([])
  })
})

describe("the checks themselves", () => {
  const g = (entries: Record<string, ReadonlyArray<string>>) => new Map(Object.entries(entries))

  it("find every cycle and print it", () => {
    const edges = g({
      "src/pipeline/a.ts": ["src/pipeline/b.ts", "src/pipeline/c.ts"],
      "src/pipeline/b.ts": ["src/pipeline/a.ts"],
      "src/pipeline/c.ts": ["src/pipeline/d.ts"],
      "src/pipeline/d.ts": ["src/pipeline/a.ts"],
      "src/core/e.ts": ["src/core/e.ts"],
      "src/core/f.ts": []
    })
    expect(cyclicComponents(edges)).toHaveLength(2)
    const cycles = describeCycles(edges)
    expect(cycles).toContain("src/pipeline/a.ts → src/pipeline/b.ts → src/pipeline/a.ts")
    expect(cycles).toContain("src/pipeline/c.ts → src/pipeline/d.ts → src/pipeline/a.ts → src/pipeline/c.ts")
    expect(cycles).toContain("src/core/e.ts → src/core/e.ts")
    expect(describeCycles(g({ "src/core/x.ts": ["src/core/y.ts"], "src/core/y.ts": [] }))).toEqual([])
  })

  it("flag upward imports, pipeline ↔ loop, and pipeline or loop reaching landscape", () => {
    const violations = layerViolations(g({
      "src/core/a.ts": ["src/pipeline/b.ts", "src/core/c.ts"],
      "src/pipeline/b.ts": ["src/loop/d.ts", "src/landscape/e.ts", "src/services/f.ts"],
      "src/loop/d.ts": ["src/landscape/e.ts"],
      "src/landscape/e.ts": ["src/cli/g.ts", "src/services/f.ts"],
      "src/cli/g.ts": ["src/landscape/e.ts", "src/pipeline/b.ts", "src/index.ts"],
      "src/index.ts": ["src/cli/g.ts", "src/landscape/e.ts"],
      "src/stray.ts": []
    }))
    expect(violations.map((v) => v.split(":")[0])).toEqual([
      "src/cli/g.ts → src/index.ts",
      "src/core/a.ts → src/pipeline/b.ts",
      "src/landscape/e.ts → src/cli/g.ts",
      "src/loop/d.ts → src/landscape/e.ts",
      "src/pipeline/b.ts → src/landscape/e.ts",
      "src/pipeline/b.ts → src/loop/d.ts",
      "src/stray.ts"
    ])
  })

  it("flag SQL client imports below cli/ except the database sink", () => {
    const leaks = adapterImports(g({
      "src/loop/a.ts": ["@effect/sql/SqlClient", "node:fs"],
      "src/services/b.ts": ["@effect/sql-sqlite-node/SqliteClient", "effect"],
      "src/core/c.ts": ["better-sqlite3"],
      "src/pipeline/plugins/sinks/database.ts": ["@effect/sql-sqlite-node/SqliteClient"],
      "src/landscape/d.ts": ["@effect/sql/SqlClient"],
      "src/cli/e.ts": ["@effect/sql/SqlClient"],
      "src/pipeline/f.ts": ["@effect/sqlite-like-name", "@effect/platform"]
    }))
    expect(leaks.map((v) => v.split(":")[0])).toEqual([
      "src/core/c.ts → better-sqlite3",
      "src/loop/a.ts → @effect/sql/SqlClient",
      "src/services/b.ts → @effect/sql-sqlite-node/SqliteClient"
    ])
  })
})
