/**
 * Migration 0010 (compact keys) on a real Landscape of the previous schema: the
 * fixture `tests/fixtures/landscape-v9/` holds a Landscape written at schema version
 * 9 (seven runs: a gate, an explode, fork/coalesce in both settings forms, two failed
 * aggregations, the demo), with the JSON export of every run and `explain --json` of
 * some rows, all made by runledger at that version. The migrated file must export
 * and explain byte for byte the same, keep its foreign keys, and take new runs.
 */
import { describe, expect, it } from "vitest"
import Database from "better-sqlite3"
import { copyFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, join } from "node:path"
import { afterAll, beforeAll } from "vitest"
import { LATEST_MIGRATION } from "../../src/landscape/sqlite.js"
import { REPO, runCli } from "../support/cli.js"

const FIXTURE = join(REPO, "tests/fixtures/landscape-v9")
const exportsDir = join(FIXTURE, "exports")
const explainsDir = join(FIXTURE, "explains")
const runIds = readdirSync(exportsDir).map((f) => basename(f, ".jsonl")).sort()

describe("migration 0010 of a schema-9 Landscape", () => {
  let dir = ""
  let db = ""
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "rl-v9-"))
    db = join(dir, "landscape.db")
    copyFileSync(join(FIXTURE, "landscape.db"), db)
    const before = new Database(db, { readonly: true })
    expect(before.prepare("SELECT MAX(migration_id) AS n FROM effect_sql_migrations").get()).toEqual({ n: 9 })
    before.close()
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("exports every run byte for byte as before", () => {
    expect(runIds.length).toBe(7)
    for (const [i, runId] of runIds.entries()) {
      const out = join(dir, `${runId}.jsonl`)
      const r = runCli(["export", "--db", db, "--run", runId, "--format", "json", "--out", out])
      expect(r.status, r.stderr).toBe(0)
      // The first command on the file says, before the wait, that it upgrades it; later ones have nothing to say.
      if (i === 0) expect(r.stderr).toMatch(new RegExp(`upgrading the Landscape .*landscape\\.db from schema version 9 to ${LATEST_MIGRATION}; this happens once`))
      else expect(r.stderr).not.toMatch(/upgrading/)
      expect(readFileSync(out, "utf8"), runId).toBe(readFileSync(join(exportsDir, `${runId}.jsonl`), "utf8"))
    }
  })

  it("is now at the latest schema, with the per-row tables compact, their views in place and every foreign key whole", () => {
    const after = new Database(db, { readonly: true })
    try {
      expect(after.prepare("SELECT MAX(migration_id) AS n FROM effect_sql_migrations").get()).toEqual({ n: LATEST_MIGRATION })
      const kinds = Object.fromEntries(
        (after.prepare(`SELECT name, type FROM sqlite_master WHERE name IN ('rows', 'tokens', 'node_states', 'routing_events',
          'token_outcomes', 'ls_rows', 'ls_tokens', 'ls_node_states', 'ls_routing_events', 'ls_token_outcomes')`).all() as Array<{ name: string; type: string }>)
          .map((r) => [r.name, r.type])
      )
      expect(kinds).toEqual({
        rows: "view", tokens: "view", node_states: "view", routing_events: "view", token_outcomes: "view",
        ls_rows: "table", ls_tokens: "table", ls_node_states: "table", ls_routing_events: "table", ls_token_outcomes: "table"
      })
      expect(after.pragma("foreign_key_check")).toEqual([])
      // Every record kept: the views show as many as the compact tables hold.
      for (const [view, table] of [["rows", "ls_rows"], ["tokens", "ls_tokens"], ["node_states", "ls_node_states"],
        ["routing_events", "ls_routing_events"], ["token_outcomes", "ls_token_outcomes"]] as const) {
        const n = (t: string) => (after.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n
        expect(n(view), view).toBe(n(table))
        expect(n(view), view).toBeGreaterThan(0)
      }
    } finally {
      after.close()
    }
  })

  it("explains rows as before", () => {
    const files = readdirSync(explainsDir)
    expect(files.length).toBeGreaterThanOrEqual(7)
    for (const file of files) {
      const [, runId, row] = /^(.+)-(\d+)\.json$/.exec(file)!
      const r = runCli(["explain", "--db", db, "--run", runId!, "--row", row!, "--json"])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout, file).toBe(readFileSync(join(explainsDir, file), "utf8"))
    }
  })

  it("takes a new run after the old ones, whose signed export verifies", () => {
    const ws = join(dir, "ws")
    cpSync(join(REPO, "tests/fixtures/pipelines"), ws, { recursive: true })
    const run = runCli(["run", "-s", "orders/settings.yaml", "--db", db, "--json"], { cwd: ws })
    expect(run.status, run.stderr).toBe(0)
    const result = JSON.parse(run.stdout) as { run_id: string; rows_processed: number }
    expect(result.rows_processed).toBe(8)
    const out = join(dir, "new.jsonl")
    const env = { RUNLEDGER_SIGNING_KEY: "migration-test-key" }
    expect(runCli(["export", "--db", db, "--run", result.run_id, "--out", out, "--sign"], { env }).status).toBe(0)
    const verified = runCli(["verify", out], { env })
    expect(verified.status, verified.stdout + verified.stderr).toBe(0)
    const check = new Database(db, { readonly: true })
    try {
      // The new run's keys follow the old ones'; the old runs are untouched.
      const keys = check.prepare("SELECT run_id, run_key FROM runs ORDER BY run_key").all() as Array<{ run_id: string; run_key: number }>
      expect(keys.length).toBe(8)
      expect(keys[keys.length - 1]!.run_id).toBe(result.run_id)
      expect(new Set(keys.map((k) => k.run_key)).size).toBe(8)
    } finally {
      check.close()
    }
    for (const runId of runIds) {
      const again = join(dir, `again-${runId}.jsonl`)
      expect(runCli(["export", "--db", db, "--run", runId, "--out", again]).status).toBe(0)
      expect(readFileSync(again, "utf8"), runId).toBe(readFileSync(join(exportsDir, `${runId}.jsonl`), "utf8"))
    }
  })
})
