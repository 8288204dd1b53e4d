import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * The two lookups `explain` makes without an index before this: a row's validation
 * errors (by `row_id`) and a token's transform errors (by `token_id`), each a scan of
 * the run's whole error table on a large run.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`CREATE INDEX IF NOT EXISTS validation_errors_row ON validation_errors (row_id)`)
  yield* sql.unsafe(`CREATE INDEX IF NOT EXISTS transform_errors_token ON transform_errors (token_id)`)
})
