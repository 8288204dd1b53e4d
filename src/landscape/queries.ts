/** Read queries over the Landscape used by the CLI's summaries. */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { RecorderError } from "../services/recorder.js"

export interface SinkOutcomeCount {
  readonly sink_name: string | null
  readonly outcome: string
  readonly n: number
}

/** Terminal outcomes of a run grouped by sink (null for outcomes without one). */
export const outcomeCountsBySink = (runId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<SinkOutcomeCount>`
      SELECT sink_name, outcome, COUNT(*) AS n FROM token_outcomes
      WHERE run_id = ${runId} AND is_terminal = 1
      GROUP BY sink_name, outcome ORDER BY sink_name, outcome`
  }).pipe(Effect.mapError((e) => new RecorderError({ reason: "Database", message: `reading outcomes: ${e.message}`, cause: e })))
