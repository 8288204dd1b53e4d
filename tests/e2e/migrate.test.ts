/**
 * `runledger migrate-settings`: the positional form rewritten in the explicit wiring of
 * ELSPETH's current format. Every case runs twice — the original file in one copy of
 * its folder, the migrated file in another — and every output file must be the same
 * bytes. The in-repo fixtures always run; the ELSPETH February-2026 corpus when present.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { parse } from "yaml"
import { runCli } from "../support/cli.js"
import { COMPAT, compatSkipNotice, HAS_COMPAT } from "../support/compat.js"
import { PIPELINE_FIXTURES } from "../support/fixtures.js"

const tmp: Array<string> = []
const fresh = (from: string): string => {
  const dir = mkdtempSync(join(tmpdir(), "rl-migrate-"))
  tmp.push(dir)
  cpSync(from, dir, { recursive: true })
  return dir
}
afterAll(() => {
  for (const d of tmp) rmSync(d, { recursive: true, force: true })
})

/**
 * Every file under `dir` except the Landscape, the settings files and the audit export
 * (its records carry run ids and times, so it differs between any two runs), by path.
 */
const outputsOf = (dir: string, under: string, skip: ReadonlySet<string>): Map<string, Buffer> => {
  const out = new Map<string, Buffer>()
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) {
        if (name !== "runs") walk(p)
      } else if (!name.endsWith(".yaml") && !/\.db(-wal|-shm)?$/.test(name) && !skip.has(relative(dir, p))) {
        out.set(relative(dir, p), readFileSync(p))
      }
    }
  }
  walk(join(dir, under))
  return out
}

/** Runs `settings` (relative to `root`) as given and migrated; returns the migrated text. */
const bothForms = (root: string, caseDir: string, settings: string): string => {
  const before = fresh(root)
  const after = fresh(root)
  const m = runCli(["migrate-settings", settings], { cwd: after })
  expect(m.status, m.stderr).toBe(0)
  expect(m.stdout).toMatch(/on_success:/)
  writeFileSync(join(after, settings), m.stdout)
  const a = runCli(["run", "-s", settings, "--json"], { cwd: before })
  const b = runCli(["run", "-s", settings, "--json"], { cwd: after })
  expect(a.status, a.stderr).toBe(0)
  expect(b.status, b.stderr).toBe(0)
  // A `continue` that ended at default_sink becomes a gate route to that sink: the
  // explicit form counts those rows routed, not succeeded. Everything else is equal.
  const counts = (s: string) => {
    const { run_id: _r, rows_succeeded, rows_routed, routed_destinations: _d, ...rest } = JSON.parse(s) as Record<string, unknown>
    return { ...rest, delivered: (rows_succeeded as number) + (rows_routed as number) }
  }
  expect(counts(b.stdout)).toEqual(counts(a.stdout))
  const parsed = parse(readFileSync(join(before, settings), "utf8")) as {
    landscape?: { export?: { enabled?: boolean; sink?: string } }
    sinks: Record<string, { options?: { path?: string } }>
  }
  const exportSink = parsed.landscape?.export?.enabled === true ? parsed.landscape.export.sink : undefined
  const exportPath = exportSink === undefined ? undefined : parsed.sinks[exportSink]?.options?.path
  const skip = new Set(exportPath === undefined ? [] : [exportPath])
  for (const p of skip) {
    expect(existsSync(join(before, p)), p).toBe(true)
    expect(existsSync(join(after, p)), p).toBe(true)
  }
  const outA = outputsOf(before, caseDir, skip)
  const outB = outputsOf(after, caseDir, skip)
  expect(Array.from(outB.keys()).sort()).toEqual(Array.from(outA.keys()).sort())
  expect(outA.size).toBeGreaterThan(0)
  for (const [file, bytes] of outA) expect(outB.get(file)?.equals(bytes), file).toBe(true)
  return m.stdout
}

describe("migrate-settings on the in-repo fixtures", () => {
  it.each(["orders", "baskets", "ledger", "forks"])("%s: both forms write the same bytes", (name) => {
    const migrated = bothForms(PIPELINE_FIXTURES, name, `${name}/settings.yaml`)
    expect(migrated).not.toMatch(/default_sink/)
    expect(migrated).not.toMatch(/: continue\b/)
  })

  it("keeps comments and ${VAR} references, and moves on_error up beside plugin", () => {
    const dir = fresh(PIPELINE_FIXTURES)
    writeFileSync(
      join(dir, "env.yaml"),
      [
        "# a comment that stays",
        "source:",
        "  plugin: csv",
        "  options:",
        "    path: ${IN:-orders/input.csv}",
        "    schema: {mode: observed}",
        "    on_validation_failure: discard",
        "transforms:",
        "  - plugin: passthrough",
        "    options:",
        "      schema: {mode: observed}",
        "      on_error: discard",
        "sinks:",
        "  out: {plugin: json, options: {path: out.jsonl, format: jsonl, schema: {mode: observed}}}",
        "default_sink: out",
        ""
      ].join("\n")
    )
    const r = runCli(["migrate-settings", "env.yaml"], { cwd: dir, env: { IN: "secret/path.csv" } })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain("# a comment that stays")
    expect(r.stdout).toContain("${IN:-orders/input.csv}")
    expect(r.stdout).not.toContain("secret/path.csv")
    expect(r.stdout).toMatch(/- name: passthrough_0\n {4}plugin: passthrough\n {4}input: source_out\n {4}on_success: out\n {4}on_error: discard\n/)
    expect(r.stdout).not.toMatch(/options:\n {6}schema: \{mode: observed\}\n {6}on_error/)
    expect(r.stderr).toMatch(/note: transforms\[0\]: named 'passthrough_0'/)
    writeFileSync(join(dir, "env2.yaml"), r.stdout)
    const v = runCli(["validate", "-s", "env2.yaml"], { cwd: dir })
    expect(v.status, v.stderr).toBe(0)
  })

  it("refuses a node fed from two places, naming it", () => {
    const dir = fresh(PIPELINE_FIXTURES)
    const text = readFileSync(join(dir, "forks/settings.yaml"), "utf8").replace('"false": rejected', '"false": continue')
    writeFileSync(join(dir, "conv.yaml"), text)
    const r = runCli(["migrate-settings", "conv.yaml"], { cwd: dir })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/conv\.yaml: coalesce\[0\]: cannot be written in the explicit form: gates\[1\] \('size'\) is fed from two places/)
    expect(r.stdout).toBe("")
  })

  it("writes to -o, never over an existing file, and says when a file is already explicit", () => {
    const dir = fresh(PIPELINE_FIXTURES)
    const w = runCli(["migrate-settings", "orders/settings.yaml", "-o", "new.yaml"], { cwd: dir })
    expect(w.status, w.stderr).toBe(0)
    expect(readFileSync(join(dir, "new.yaml"), "utf8")).toMatch(/on_success:/)
    const again = runCli(["migrate-settings", "orders/settings.yaml", "-o", "new.yaml"], { cwd: dir })
    expect(again.status).toBe(2)
    expect(again.stderr).toMatch(/new\.yaml: the output file exists/)
    const explicit = runCli(["migrate-settings", "branches/settings.yaml"], { cwd: dir })
    expect(explicit.status, explicit.stderr).toBe(0)
    expect(explicit.stderr).toMatch(/already in the explicit form/)
    expect(explicit.stdout).toBe(readFileSync(join(dir, "branches/settings.yaml"), "utf8"))
  })
})

compatSkipNotice("migrate-settings on the ELSPETH February-2026 examples (tests/e2e/migrate.test.ts)")

describe.skipIf(!HAS_COMPAT)("migrate-settings on the ELSPETH February-2026 examples", () => {
  const names = HAS_COMPAT ? readdirSync(join(COMPAT, "examples")).filter((n) => existsSync(join(COMPAT, "examples", n, "settings.yaml"))) : []
  let root = ""
  beforeAll(() => {
    root = COMPAT
  })
  it.each(names)("%s: both forms write the same bytes", (name) => {
    bothForms(root, `examples/${name}`, `examples/${name}/settings.yaml`)
  })
})
