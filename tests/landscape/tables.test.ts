import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { NodeId } from "../../src/core/ids.js"
import { INTERNAL_KEY_COLUMNS } from "../../src/landscape/compact.js"
import { TABLES } from "../../src/landscape/tables.js"
import { Recorder } from "../../src/services/recorder.js"
import type { AuditRecord } from "../../src/services/records.js"
import { MemoryLandscape } from "../support/landscape.js"
import * as Trail from "../support/trail.js"

const SRC = "source_csv_1" as NodeId

describe("audit tables", () => {
  // First in this file on purpose: no record of these tables has been written before it,
  // so nothing cached from an earlier record can mask a statement shaped by the first one.
  it.scoped("stores records of one table with different nullable fields present, each as given", () =>
    Effect.gen(function*() {
      const rec = yield* Recorder
      const runId = yield* rec.beginRun({ settings: {} })
      yield* Trail.registerNode({ runId, nodeId: SRC, pluginName: "csv", nodeType: "source", name: "source", config: {}, sequence: 0 })
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: {} })
      const at = yield* rec.now
      // Built without the nullable fields it has no value for (as a record from plain JS may be).
      const bare = { _tag: "Token", token_id: "tok_bare", run_id: runId, row_id: rowId, created_at: at } as unknown as AuditRecord
      const forked: AuditRecord = {
        _tag: "Token",
        token_id: "tok_forked",
        run_id: runId,
        row_id: rowId,
        fork_group_id: "grp_1",
        join_group_id: null,
        expand_group_id: "exp_1",
        branch_name: "left",
        created_at: at
      }
      const sparseCheckpoint = {
        _tag: "Checkpoint", checkpoint_id: "cp_1", run_id: runId, sequence_number: 0, topology_hash: "t", created_at: at
      } as unknown as AuditRecord
      const fullCheckpoint: AuditRecord = {
        _tag: "Checkpoint",
        checkpoint_id: "cp_2",
        run_id: runId,
        token_id: "tok_forked",
        node_id: SRC,
        sequence_number: 1,
        aggregation_state_json: "{\"n\":1}",
        sink_state_json: "{\"rows\":2}",
        topology_hash: "t",
        created_at: at,
        state_json: "{\"version\":1}",
        attempt: 1
      }
      // One append, one flush: both records of each table go through the same statements.
      yield* rec.append([bare, forked, sparseCheckpoint, fullCheckpoint])
      yield* rec.flush
      const sql = yield* SqlClient.SqlClient
      const tokens = yield* sql`SELECT token_id, fork_group_id, join_group_id, expand_group_id, branch_name, created_at
                                FROM tokens ORDER BY token_id`
      assert.deepStrictEqual(tokens.map((t) => ({ ...t })), [
        { token_id: "tok_bare", fork_group_id: null, join_group_id: null, expand_group_id: null, branch_name: null, created_at: at },
        { token_id: "tok_forked", fork_group_id: "grp_1", join_group_id: null, expand_group_id: "exp_1", branch_name: "left", created_at: at }
      ])
      const checkpoints = yield* sql`SELECT checkpoint_id, token_id, node_id, sequence_number, aggregation_state_json, sink_state_json
                                     FROM checkpoints ORDER BY checkpoint_id`
      assert.deepStrictEqual(checkpoints.map((c) => ({ ...c })), [
        { checkpoint_id: "cp_1", token_id: null, node_id: null, sequence_number: 0, aggregation_state_json: null, sink_state_json: null },
        {
          checkpoint_id: "cp_2",
          token_id: "tok_forked",
          node_id: SRC,
          sequence_number: 1,
          aggregation_state_json: "{\"n\":1}",
          sink_state_json: "{\"rows\":2}"
        }
      ])
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("lists, for every record type, exactly the columns of its table", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      assert.strictEqual(TABLES.length, 17)
      for (const spec of TABLES) {
        const info = yield* sql<{ name: string }>`SELECT name FROM pragma_table_info(${spec.table})`
        assert.isAbove(info.length, 0, `${spec.table} exists`)
        // The integer keys of runs, nodes and edges (0010) are the schema's, not the records'.
        const internal = INTERNAL_KEY_COLUMNS.get(spec.table)
        assert.sameMembers([...spec.columns], info.map((c) => c.name).filter((c) => c !== internal), spec.table)
      }
    }).pipe(Effect.provide(MemoryLandscape())))
})
