/**
 * Migration 0008: `explain`'s lookups of a row's validation errors and of a token's
 * transform errors use an index (EXPLAIN QUERY PLAN), also on a Landscape created by
 * the previous version and migrated.
 */
import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect, Layer } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { migrations, SqliteLandscape } from "../../src/landscape/sqlite.js"

/** The plan's detail lines for the lineage reader's two error queries (same WHERE and JOIN). */
const plans = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const detail = (rows: ReadonlyArray<{ detail: string }>) => rows.map((r) => r.detail).join(" | ")
  const validation = yield* sql.unsafe<{ detail: string }>(
    `EXPLAIN QUERY PLAN SELECT ve.error_id, n.name FROM validation_errors ve
       JOIN nodes n ON n.run_id = ve.run_id AND n.node_id = ve.node_id
     WHERE ve.row_id = ? ORDER BY ve.created_at, ve.error_id`,
    ["row_1"]
  )
  const transform = yield* sql.unsafe<{ detail: string }>(
    `EXPLAIN QUERY PLAN SELECT te.error_id, n.name FROM transform_errors te
       JOIN nodes n ON n.run_id = te.run_id AND n.node_id = te.node_id
     WHERE te.token_id IN (?, ?) ORDER BY te.created_at, te.error_id`,
    ["tok_1", "tok_2"]
  )
  return { validation: detail(validation), transform: detail(transform) }
})

describe("lineage indexes (migration 0008)", () => {
  it.effect("a migrated Landscape answers explain's error lookups by index, not by scanning", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "rl-0008-"))
      const file = join(dir, "audit.db")
      try {
        // The previous version's Landscape: every migration before 0008.
        const older = Object.fromEntries(Object.entries(migrations).filter(([name]) => Number(name.slice(0, 4)) < 8))
        const before = yield* Effect.gen(function*() {
          yield* SqliteMigrator.run({ loader: SqliteMigrator.fromRecord(older) }).pipe(Effect.provide(NodeContext.layer))
          return yield* plans
        }).pipe(Effect.provide(SqliteClient.layer({ filename: file })), Effect.scoped)
        assert.match(before.validation, /SCAN ve\b/)
        assert.match(before.transform, /SCAN te\b/)

        const after = yield* plans.pipe(Effect.provide(SqliteLandscape(file).pipe(Layer.orDie)), Effect.scoped)
        assert.include(after.validation, "USING INDEX validation_errors_row")
        assert.include(after.transform, "USING INDEX transform_errors_token")
        assert.notMatch(after.validation, /SCAN ve\b/)
        assert.notMatch(after.transform, /SCAN te\b/)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))
})
