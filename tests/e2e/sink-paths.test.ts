/**
 * The built CLI refuses, before reading any row, a sink that would write the input
 * file, the Landscape, or another sink's file (exit 2) — also through symbolic links
 * and `..` segments — and leaves the input untouched.
 */
import { afterAll, describe, expect, it } from "vitest"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { runCli } from "../support/cli.js"
import { tempDir } from "../support/pipeline.js"

const dir = tempDir("rl-sink-paths-")
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const INPUT = join(dir, "in.csv")
writeFileSync(INPUT, "id,name\n" + Array.from({ length: 500 }, (_, i) => `${i},name${i}\n`).join(""))
const inputHash = () => createHash("sha256").update(readFileSync(INPUT)).digest("hex")
const ORIGINAL = inputHash()
mkdirSync(join(dir, "sub"))
symlinkSync(INPUT, join(dir, "link.csv"))

let n = 0
/** Writes settings (relative paths resolve against `dir`, the working directory of each run). */
const settings = (sinks: string, extra = "") => {
  const file = `s${++n}.yaml`
  writeFileSync(
    join(dir, file),
    `
source:
  plugin: csv
  options: {path: in.csv, schema: {mode: observed}, on_validation_failure: discard}
gates:
  - {name: g, condition: "row['id'] == '7'", routes: {"true": copy, "false": continue}}
sinks:
${sinks}
default_sink: out
${extra}
`
  )
  return file
}
const sink = (name: string, path: string) => `  ${name}: {plugin: csv, options: {path: ${JSON.stringify(path)}, schema: {mode: observed}}}`

const expectRefused = (args: ReadonlyArray<string>, ...needles: ReadonlyArray<string>) => {
  const r = runCli(args, { cwd: dir })
  expect(r.status, r.stderr).toBe(2)
  for (const needle of needles) expect(r.stderr).toContain(needle)
  expect(inputHash()).toBe(ORIGINAL)
  return r
}

describe("sink paths at validation", () => {
  it("a sink naming the Landscape's change journal (given or derived from the URL) is refused", () => {
    const given = settings([sink("out", "out.csv"), sink("copy", "j/journal.jsonl")].join("\n"), "landscape: {url: 'sqlite:///j/audit.db', dump_to_jsonl: true, dump_to_jsonl_path: j/journal.jsonl}")
    expectRefused(["validate", "-s", given], "sinks.copy.options.path", "landscape.dump_to_jsonl_path", "change journal")
    const derived = settings([sink("out", "out.csv"), sink("copy", "j/audit.journal.jsonl")].join("\n"), "landscape: {url: 'sqlite:///j/audit.db', dump_to_jsonl: true}")
    expectRefused(["validate", "-s", derived], "sinks.copy.options.path", "landscape.dump_to_jsonl", join(dir, "j/audit.journal.jsonl"))
    expect(existsSync(join(dir, "j"))).toBe(false)
  })

  it("a sink naming the input file (relative, with ./) is refused by validate and run; the input is untouched", () => {
    const file = settings([sink("out", "./in.csv"), sink("copy", "copy.csv")].join("\n"))
    expectRefused(["validate", "-s", file], "sinks.out.options.path", "source.options.path", INPUT)
    expectRefused(["run", "-s", file, "--db", "audit1.db"], "sinks.out.options.path", "source.options.path", INPUT)
    // refused before the Landscape is opened or any row read
    expect(existsSync(join(dir, "audit1.db"))).toBe(false)
    expect(existsSync(join(dir, "copy.csv"))).toBe(false)
  })

  it("a sink reaching the input through a symbolic link and `..` is refused; the input is untouched", () => {
    const file = settings([sink("out", "sub/../link.csv"), sink("copy", "copy.csv")].join("\n"))
    const r = expectRefused(["run", "-s", file, "--db", "audit2.db"], "sinks.out.options.path", "'sub/../link.csv'", "source.options.path")
    expect(r.stderr).toContain("would overwrite the pipeline's input")
    expect(existsSync(join(dir, "audit2.db"))).toBe(false)
  })

  it("two sinks writing one file are refused, naming both", () => {
    const file = settings([sink("out", "out/both.csv"), sink("copy", "sub/../out/both.csv")].join("\n"))
    expectRefused(["validate", "-s", file], "sinks.copy.options.path", "sinks.out.options.path", join(dir, "out", "both.csv"))
    expectRefused(["run", "-s", file, "--db", "audit3.db"], "sinks.copy.options.path", "sinks.out.options.path")
    expect(existsSync(join(dir, "out"))).toBe(false)
  })

  it("a sink writing the Landscape is refused; the check follows --db over landscape.url", () => {
    const sinks = [sink("out", "trail.db"), sink("copy", "copy.csv")].join("\n")
    // landscape.url names the sink's file: validate and a run without --db refuse
    const withUrl = settings(sinks, "landscape: {url: sqlite:///trail.db}")
    expectRefused(["validate", "-s", withUrl], "sinks.out.options.path", "landscape.url", join(dir, "trail.db"))
    expectRefused(["run", "-s", withUrl], "sinks.out.options.path", "landscape.url")
    expect(existsSync(join(dir, "trail.db"))).toBe(false)
    // --db naming it is refused too, naming --db
    const plain = settings(sinks)
    expectRefused(["run", "-s", plain, "--db", "sqlite:///./trail.db"], "sinks.out.options.path", "--db")
    expect(existsSync(join(dir, "trail.db"))).toBe(false)
    // --db elsewhere: the run uses that Landscape, so the settings are fine
    const ok = runCli(["run", "-s", withUrl, "--db", "elsewhere.db", "--quiet"], { cwd: dir })
    expect(ok.status, ok.stderr).toBe(0)
    expect(readFileSync(join(dir, "trail.db"), "utf8").split("\r\n")[0]).toBe("id,name")
    expect(inputHash()).toBe(ORIGINAL)
  })
})
