/**
 * Two runs writing one Landscape at the same time, from two processes. Each flush
 * gives its new rows, tokens and states integer keys (schema v2) from the table's
 * largest key, read inside a transaction that holds the write lock from its start; two
 * writers must never hand out the same key, wait on each other's lock instead of
 * failing, and leave two whole trails.
 */
import { describe, expect, it } from "vitest"
import Database from "better-sqlite3"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Layer } from "effect"
import { LandscapeSql } from "../../src/landscape/sqlite.js"
import { runCli, runCliIn } from "../support/cli.js"

const ROWS = 20_000

const settings = (name: string) => `
source:
  plugin: csv
  options:
    path: input.csv
    schema: {mode: fixed, fields: ["id: int", "customer: str", "total: int"]}
    on_validation_failure: discard
gates:
  - name: big
    condition: "row['total'] >= 500"
    routes: {"true": large, "false": continue}
sinks:
  small:
    plugin: csv
    options: {path: ${name}/small.csv, schema: {mode: observed}}
  large:
    plugin: csv
    options: {path: ${name}/large.csv, schema: {mode: observed}}
default_sink: small
checkpoint: {enabled: true, frequency: every_n, checkpoint_interval: 500}
`

describe("two runs writing one Landscape at once", () => {
  it("both complete, with whole trails, distinct keys, every foreign key kept, and exports that verify", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rl-concurrent-"))
    try {
      const lines = ["id,customer,total"]
      for (let i = 0; i < ROWS; i++) lines.push(`${i},c${i % 97},${(i * 37) % 1000}`)
      writeFileSync(join(dir, "input.csv"), lines.join("\n") + "\n")
      const large = lines.slice(1).filter((l) => Number(l.split(",")[2]) >= 500).length
      for (const name of ["a", "b"]) {
        mkdirSync(join(dir, name))
        writeFileSync(join(dir, `${name}.yaml`), settings(name))
      }
      const db = join(dir, "shared.db")
      // The Landscape exists (migrated) before both start: what is under test is the writing.
      await Effect.runPromise(Effect.scoped(Layer.build(LandscapeSql(db))))
      const [a, b] = await Promise.all(
        ["a", "b"].map((name) => runCliIn(dir, ["run", "-s", `${name}.yaml`, "--db", db, "--json"], undefined, 120_000))
      )
      for (const r of [a!, b!]) {
        expect(r.status, r.stderr).toBe(0)
        const result = JSON.parse(r.stdout) as { rows_processed: number; rows_routed: number; rows_succeeded: number }
        expect(result.rows_processed).toBe(ROWS)
        expect(result.rows_routed).toBe(large)
        expect(result.rows_succeeded).toBe(ROWS - large)
      }
      for (const name of ["a", "b"]) {
        expect(readFileSync(join(dir, name, "large.csv"), "utf8").trimEnd().split("\n").length - 1).toBe(large)
        expect(readFileSync(join(dir, name, "small.csv"), "utf8").trimEnd().split("\n").length - 1).toBe(ROWS - large)
      }

      const check = new Database(db, { readonly: true })
      const runIds: Array<string> = []
      try {
        expect(check.pragma("foreign_key_check")).toEqual([])
        const runs = check.prepare("SELECT run_id, run_key FROM runs ORDER BY run_key").all() as Array<{ run_id: string; run_key: number }>
        expect(runs.length).toBe(2)
        for (const { run_id } of runs) {
          runIds.push(run_id)
          const count = (sql: string) => (check.prepare(sql).get(run_id) as { n: number }).n
          expect(count("SELECT COUNT(*) AS n FROM rows WHERE run_id = ?")).toBe(ROWS)
          expect(count("SELECT COUNT(*) AS n FROM tokens WHERE run_id = ?")).toBe(ROWS)
          expect(count("SELECT COUNT(*) AS n FROM node_states WHERE run_id = ?")).toBe(2 * ROWS)
          expect(count("SELECT COUNT(*) AS n FROM token_outcomes WHERE run_id = ? AND is_terminal = 1")).toBe(ROWS)
          expect(count(`SELECT COUNT(*) AS n FROM routing_events e JOIN node_states s ON s.state_id = e.state_id WHERE s.run_id = ?`)).toBe(ROWS)
          // Every record of the run refers to its own run's tokens, rows and nodes.
          expect(count(`SELECT COUNT(*) AS n FROM ls_node_states s JOIN ls_tokens t ON t.token_key = s.token_key
                        WHERE s.run_key = (SELECT run_key FROM runs WHERE run_id = ?) AND t.run_key <> s.run_key`)).toBe(0)
          expect(count(`SELECT COUNT(*) AS n FROM ls_tokens t JOIN ls_rows r ON r.row_key = t.row_key
                        WHERE t.run_key = (SELECT run_key FROM runs WHERE run_id = ?) AND r.run_key <> t.run_key`)).toBe(0)
          expect(count(`SELECT COUNT(*) AS n FROM ls_node_states s JOIN nodes n ON n.node_key = s.node_key
                        JOIN runs u ON u.run_key = s.run_key WHERE u.run_id = ? AND n.run_id <> u.run_id`)).toBe(0)
        }
      } finally {
        check.close()
      }
      const env = { RUNLEDGER_SIGNING_KEY: "concurrent-test-key" }
      for (const runId of runIds) {
        const out = join(dir, `${runId}.jsonl`)
        expect(runCli(["export", "--db", db, "--run", runId, "--out", out, "--sign"], { env }).status).toBe(0)
        const verified = runCli(["verify", out], { env })
        expect(verified.status, verified.stdout + verified.stderr).toBe(0)
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 180_000)
})
