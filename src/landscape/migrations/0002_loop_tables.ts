import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** Loop tables: loop_runs, loop_issues, stage_results, command_results. */
export default Effect.gen(function*() {
  yield* SqlClient.SqlClient
})
