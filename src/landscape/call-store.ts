/**
 * `CallStoreSql`: the CallStore port over the Landscape's SqlClient and the filesystem
 * payload store (see services/call-store.ts).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer } from "effect"
import { CallStore, type RecordedCallRow } from "../services/call-store.js"
import { filesystemPayloadStore } from "./payload-store.js"

export const makeCallStore = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return CallStore.of({
    blobs: (basePath) => filesystemPayloadStore(basePath),
    recordedCalls: (runId) =>
      Effect.gen(function*() {
        const runs = yield* sql.unsafe<{ run_id: string }>(`SELECT run_id FROM runs WHERE run_id = ?`, [runId])
        if (runs.length === 0) return yield* Effect.fail(`no run ${runId} in this Landscape`)
        const rows = yield* sql.unsafe<RecordedCallRow>(
          `SELECT c.call_id, c.state_id, c.request_hash, c.response_hash, c.attempt, c.http_status, c.error_class,
                  c.error_json, c.response_model, s.status AS state_status, s.output_hash AS state_output_hash,
                  s.error_json AS state_error_json
           FROM calls c JOIN node_states s ON s.state_id = c.state_id
           WHERE c.run_id = ? ORDER BY c.state_id, c.attempt`,
          [runId]
        )
        return rows.map((r) => ({ ...r, attempt: Number(r.attempt), http_status: r.http_status === null ? null : Number(r.http_status) }))
      }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(`cannot read the recorded calls of run ${runId}: ${e.message}`)))
  })
})

export const CallStoreSql: Layer.Layer<CallStore, never, SqlClient.SqlClient> = Layer.effect(CallStore, makeCallStore)
