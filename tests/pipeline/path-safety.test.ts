/**
 * The start-up check that no sink writes the source's file, the Landscape, or another
 * writer's file — paths compared as the files they name.
 */
import { describe, expect, it } from "@effect/vitest"
import { afterAll } from "vitest"
import { Effect, Either } from "effect"
import { linkSync, mkdirSync, rmSync, symlinkSync } from "node:fs"
import { join } from "node:path"
import { buildPipeline } from "../../src/pipeline/build.js"
import { canonicalPath, findPathConflict } from "../../src/pipeline/path-safety.js"
import { builtinRegistry } from "../../src/pipeline/plugins/registry.js"
import { parseSettings } from "../../src/pipeline/settings.js"
import { tempDir, writeFile } from "../support/pipeline.js"

const dirs: Array<string> = []
const fresh = () => {
  const dir = tempDir("rl-paths-")
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const settingsFor = (input: string, sinks: string, extra = "") => `
source:
  plugin: csv
  options: {path: ${JSON.stringify(input)}, schema: {mode: observed}, on_validation_failure: discard}
sinks:
${sinks}
default_sink: out
${extra}
`

const build = (yaml: string, landscape?: { url: string; key: string }) =>
  parseSettings("settings.yaml", yaml, {}).pipe(
    Effect.flatMap((loaded) => buildPipeline(loaded, builtinRegistry, landscape === undefined ? {} : { landscape })),
    Effect.either
  )

const errorOf = (yaml: string, landscape?: { url: string; key: string }) =>
  Effect.map(build(yaml, landscape), (r) => {
    if (Either.isRight(r)) throw new Error("expected a settings error")
    return r.left
  })

const csvSinkAt = (name: string, path: string) => `  ${name}: {plugin: csv, options: {path: ${JSON.stringify(path)}, schema: {mode: observed}}}`

describe("canonicalPath", () => {
  it("resolves relative and dot segments, links of the file and of its folders, and files not created yet", () => {
    const dir = fresh()
    mkdirSync(join(dir, "real", "sub"), { recursive: true })
    writeFile(dir, "real/a.csv", "x\n")
    symlinkSync(join(dir, "real", "sub"), join(dir, "lnk"))
    symlinkSync("a.csv", join(dir, "real", "alias.csv"))
    symlinkSync("../nowhere/x.csv", join(dir, "real", "dangling"))
    const real = canonicalPath(dir)
    expect(canonicalPath("./real//a.csv", dir)).toBe(join(real, "real", "a.csv"))
    expect(canonicalPath("real/alias.csv", dir)).toBe(join(real, "real", "a.csv"))
    // `lnk/..` is the parent of the link's target, as the operating system sees it
    expect(canonicalPath("lnk/../a.csv", dir)).toBe(join(real, "real", "a.csv"))
    expect(canonicalPath("lnk/new/out.csv", dir)).toBe(join(real, "real", "sub", "new", "out.csv"))
    expect(canonicalPath("real/dangling", dir)).toBe(join(real, "nowhere", "x.csv"))
    expect(canonicalPath(join(dir, "real", "sub", "..", "a.csv"), "/")).toBe(join(real, "real", "a.csv"))
  })

  it("findPathConflict sees hard links of one file as the same file", () => {
    const dir = fresh()
    const a = writeFile(dir, "a.csv", "x\n")
    linkSync(a, join(dir, "b.csv"))
    const conflict = findPathConflict([
      { key: "source.options.path", path: a, role: "source" },
      { key: "sinks.out.options.path", path: join(dir, "b.csv"), role: "sink", sink: "out" }
    ])
    expect(conflict?.claim.key).toBe("sinks.out.options.path")
    expect(conflict?.other.key).toBe("source.options.path")
  })
})

describe("buildPipeline: sink paths", () => {
  it.effect("a sink writing the source's file is a settings error naming both keys and the file", () =>
    Effect.gen(function*() {
      const dir = fresh()
      const input = writeFile(dir, "in.csv", "a\n1\n")
      const e = yield* errorOf(settingsFor(input, csvSinkAt("out", join(dir, "sub", "..", "in.csv"))))
      expect(e.key).toBe("sinks.out.options.path")
      expect(e.message).toContain("source.options.path")
      expect(e.message).toContain(canonicalPath(input))
      expect(e.message).toContain("would overwrite the pipeline's input")
    }))

  it.effect("also through a symbolic link, and for a json or database sink", () =>
    Effect.gen(function*() {
      const dir = fresh()
      const input = writeFile(dir, "in.csv", "a\n1\n")
      symlinkSync(input, join(dir, "link.csv"))
      const viaLink = yield* errorOf(settingsFor(input, csvSinkAt("out", join(dir, "link.csv"))))
      expect(viaLink.key).toBe("sinks.out.options.path")
      const json = yield* errorOf(settingsFor(input, `  out: {plugin: json, options: {path: ${JSON.stringify(input)}, schema: {mode: observed}}}`))
      expect(json.key).toBe("sinks.out.options.path")
      const db = yield* errorOf(
        settingsFor(input, `  out: {plugin: database, options: {url: "sqlite:///${input}", table: t, schema: {mode: observed}}}`)
      )
      expect(db.key).toBe("sinks.out.options.url")
      expect(db.message).toContain("source.options.path")
    }))

  it.effect("two sinks writing one file are a settings error naming both", () =>
    Effect.gen(function*() {
      const dir = fresh()
      const input = writeFile(dir, "in.csv", "a\n1\n")
      const e = yield* errorOf(
        settingsFor(
          input,
          [csvSinkAt("out", join(dir, "out.csv")), csvSinkAt("copy", join(dir, "x", "..", "out.csv"))].join("\n"),
          `gates:\n  - {name: g, condition: "True", routes: {"true": copy, "false": continue}}`
        )
      )
      expect(e.key).toBe("sinks.copy.options.path")
      expect(e.message).toContain("sinks.out.options.path")
      expect(e.message).toContain("sink 'copy' and sink 'out' would both write it")
    }))

  it.effect("database sinks may share a file when they write different tables, not the same one", () =>
    Effect.gen(function*() {
      const dir = fresh()
      const input = writeFile(dir, "in.csv", "a\n1\n")
      const db = (name: string, url: string, table: string) =>
        `  ${name}: {plugin: database, options: {url: ${JSON.stringify(url)}, table: ${table}, schema: {mode: observed}}}`
      const gate = `gates:\n  - {name: g, condition: "True", routes: {"true": copy, "false": continue}}`
      const file = join(dir, "out.db")
      const distinct = yield* build(settingsFor(input, [db("out", file, "rows"), db("copy", `sqlite:///${file}`, "copies")].join("\n"), gate))
      expect(Either.isRight(distinct)).toBe(true)
      const same = yield* errorOf(settingsFor(input, [db("out", file, "rows"), db("copy", `sqlite:///${file}`, "ROWS")].join("\n"), gate))
      expect(same.key).toBe("sinks.copy.options.url")
      expect(same.message).toContain("sinks.out.options.url")
      // a file sink over a database sink's file conflicts whatever the table
      const mixed = yield* errorOf(settingsFor(input, [db("out", file, "rows"), csvSinkAt("copy", file)].join("\n"), gate))
      expect(mixed.key).toBe("sinks.copy.options.path")
    }))

  it.effect("a sink writing the Landscape: landscape.url of the settings, or the URL the run was given instead", () =>
    Effect.gen(function*() {
      const dir = fresh()
      const input = writeFile(dir, "in.csv", "a\n1\n")
      const audit = join(dir, "audit.db")
      const sinks = csvSinkAt("out", audit)
      const fromSettings = yield* errorOf(settingsFor(input, sinks, `landscape: {url: "sqlite:///${audit}"}`))
      expect(fromSettings.key).toBe("sinks.out.options.path")
      expect(fromSettings.message).toContain("landscape.url")
      expect(fromSettings.message).toContain("the Landscape (the audit database)")
      // the override decides: another Landscape makes the same settings valid …
      const elsewhere = yield* build(settingsFor(input, sinks, `landscape: {url: "sqlite:///${audit}"}`), {
        url: join(dir, "other.db"),
        key: "--db"
      })
      expect(Either.isRight(elsewhere)).toBe(true)
      // … and an override naming the sink's file is caught without landscape.url
      const fromOverride = yield* errorOf(settingsFor(input, sinks), { url: audit, key: "--db" })
      expect(fromOverride.message).toContain("--db")
      // an in-memory Landscape has no file
      expect(Either.isRight(yield* build(settingsFor(input, sinks), { url: ":memory:", key: "--db" }))).toBe(true)
    }))

  it.effect("the export: a JSON export into a sink that also receives rows, a CSV export over another file", () =>
    Effect.gen(function*() {
      const dir = fresh()
      const input = writeFile(dir, "in.csv", "a\n1\n")
      const shared = yield* errorOf(
        settingsFor(input, csvSinkAt("out", join(dir, "out.csv")), "landscape:\n  export: {enabled: true, sink: out, format: json}")
      )
      expect(shared.key).toBe("landscape.export.sink")
      expect(shared.message).toContain("sinks.out.options.path")
      // a CSV export writes <sink path without extension>/<record type>.csv
      const clash = yield* errorOf(
        settingsFor(
          input,
          [csvSinkAt("out", join(dir, "audit", "row.csv")), `  audit: {plugin: json, options: {path: ${JSON.stringify(join(dir, "audit.json"))}, schema: {mode: observed}}}`]
            .join("\n"),
          "landscape:\n  export: {enabled: true, sink: audit, format: csv}"
        )
      )
      expect(clash.key).toBe("landscape.export")
      expect(clash.message).toContain("sinks.out.options.path")
      expect(clash.message).toContain("the export and sink 'out'")
      // an export sink of its own is fine
      const own = yield* build(
        settingsFor(
          input,
          [csvSinkAt("out", join(dir, "out.csv")), `  audit: {plugin: json, options: {path: ${JSON.stringify(join(dir, "audit.json"))}, schema: {mode: observed}}}`]
            .join("\n"),
          "landscape:\n  export: {enabled: true, sink: audit, format: json}"
        )
      )
      expect(Either.isRight(own)).toBe(true)
    }))
})
