import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * External calls (the `llm` and `http` transforms): who was asked what, by whom, and
 * what came back, one row per HTTP attempt. `request_hash` / `response_hash` name the
 * bodies in the payload store (SHA-256 of their canonical JSON); the bodies themselves
 * are not in the Landscape, so a purged payload leaves its hash in the trail.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const columns = [
    `run_id TEXT`,
    `node_id TEXT`,
    `provider TEXT`,
    `model TEXT`,
    `response_model TEXT`,
    `http_status INTEGER`,
    `attempt INTEGER`,
    `error_class TEXT`,
    `usage_json TEXT`,
    `verify_json TEXT`
  ]
  for (const column of columns) yield* sql.unsafe(`ALTER TABLE calls ADD COLUMN ${column}`)
  yield* sql.unsafe(`CREATE INDEX IF NOT EXISTS calls_state ON calls (state_id)`)
  yield* sql.unsafe(`CREATE INDEX IF NOT EXISTS calls_run_request ON calls (run_id, request_hash)`)
})
