/**
 * How the SqlRecorder writes the compact per-row tables (`compact.ts`): each record's
 * text ids become the integer keys of what they name, and the new rows, tokens and
 * node states get keys of their own.
 *
 * Keys are given inside the flush's transaction, which holds the write lock from its
 * BEGIN (IMMEDIATE), so `MAX(key) + 1` read there is still free when the INSERT runs.
 * The ids a flush needs are looked up in memory first (the run's nodes and edges, the
 * tokens still live, the rows and states of this flush) and in the database
 * otherwise, a batch of ids per query. The memory is only a cache: after a failed
 * flush it is dropped, and every id is found again in the database.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import { RecorderError } from "../services/recorder.js"
import type { AuditRecord, InsertTag } from "../services/records.js"
import { insertRows } from "./statements.js"

type Sql = SqlClient.SqlClient

/** The record types stored in compact tables. */
export const COMPACT_TAGS: ReadonlySet<InsertTag> = new Set(["Row", "Token", "NodeState", "RoutingEvent", "Outcome"])

const COLUMNS = {
  ls_rows: ["row_key", "row_id", "run_key", "source_node_key", "row_index", "source_data_hash", "source_data_json", "created_at"],
  ls_tokens: [
    "token_key", "token_id", "run_key", "row_key", "fork_group_id", "join_group_id", "expand_group_id", "branch_name", "created_at"
  ],
  ls_node_states: [
    "state_key", "state_id", "token_key", "run_key", "node_key", "step_index", "attempt", "status", "input_hash", "output_hash",
    "duration_ms", "error_json", "started_at", "completed_at"
  ],
  ls_routing_events: ["event_id", "state_key", "edge_key", "routing_group_id", "ordinal", "mode", "reason_json", "created_at"],
  ls_token_outcomes: [
    "outcome_id", "run_key", "token_key", "outcome", "is_terminal", "sink_name", "batch_id", "fork_group_id", "join_group_id",
    "expand_group_id", "error_hash", "context_json", "recorded_at"
  ]
} as const

type Kind = "run" | "node" | "edge" | "row" | "token" | "state"

/** Where each kind of id is found in the database, by a list of ids. */
const LOOKUP: Record<Exclude<Kind, "node">, { readonly table: string; readonly id: string; readonly key: string }> = {
  run: { table: "runs", id: "run_id", key: "run_key" },
  edge: { table: "edges", id: "edge_id", key: "edge_key" },
  row: { table: "ls_rows", id: "row_id", key: "row_key" },
  token: { table: "ls_tokens", id: "token_id", key: "token_key" },
  state: { table: "ls_node_states", id: "state_id", key: "state_key" }
}

const LOOKUP_BATCH = 500
const nodeName = (runId: string, nodeId: string) => `${runId}\u0000${nodeId}`

const missing = (what: string, id: string, kind: string) =>
  new RecorderError({
    reason: "ConstraintViolation",
    message: `FOREIGN KEY constraint failed: ${what} names ${kind} ${id}, which is not in the Landscape`
  })

/** The keys the recorder knows, across flushes. */
export class CompactKeys {
  private readonly maps: Record<Kind, Map<string, number>> = {
    run: new Map(),
    node: new Map(),
    edge: new Map(),
    row: new Map(),
    token: new Map(),
    state: new Map()
  }
  private next = { row: 0, token: 0, state: 0 }

  /** Forgets everything (after a failed flush: what it cached may not have been written). */
  reset(): void {
    for (const m of Object.values(this.maps)) m.clear()
  }

  /** Looks up in the database the ids of `kind` not known yet. */
  private resolve(sql: Sql, kind: Kind, ids: ReadonlySet<string>): Effect.Effect<void, SqlError> {
    const map = this.maps[kind]
    const wanted = Array.from(ids).filter((id) => !map.has(id))
    if (wanted.length === 0) return Effect.void
    if (kind === "node") {
      return Effect.forEach(wanted, (name) => {
        const [runId, nodeId] = name.split("\u0000") as [string, string]
        return Effect.map(
          sql<{ node_key: number }>`SELECT node_key FROM nodes WHERE run_id = ${runId} AND node_id = ${nodeId}`,
          (found) => {
            if (found[0] !== undefined) map.set(name, Number(found[0].node_key))
          }
        )
      }, { discard: true })
    }
    const { id, key, table } = LOOKUP[kind]
    return Effect.forEach(
      Array.from({ length: Math.ceil(wanted.length / LOOKUP_BATCH) }, (_, i) => wanted.slice(i * LOOKUP_BATCH, (i + 1) * LOOKUP_BATCH)),
      (chunk) =>
        Effect.map(
          sql.unsafe<{ id: string; key: number }>(
            `SELECT ${id} AS id, ${key} AS key FROM ${table} WHERE ${id} IN (${chunk.map(() => "?").join(",")})`,
            chunk
          ),
          (found) => {
            for (const r of found) map.set(r.id, Number(r.key))
          }
        ),
      { discard: true }
    )
  }

  /** The first free key of a compact table, read inside the flush's transaction. */
  private firstFree(sql: Sql, kind: "row" | "token" | "state"): Effect.Effect<void, SqlError> {
    const { key, table } = LOOKUP[kind]
    return Effect.map(sql.unsafe<{ n: number | null }>(`SELECT MAX(${key}) AS n FROM ${table}`), (r) => {
      this.next[kind] = Number(r[0]?.n ?? 0) + 1
    })
  }

  /** Writes `records` (all of the compact type `tag`) into their table. */
  write(sql: Sql, tag: InsertTag, records: ReadonlyArray<AuditRecord>): Effect.Effect<void, SqlError | RecorderError> {
    if (records.length === 0) return Effect.void
    const self = this
    const m = this.maps
    return Effect.gen(function*() {
      const runs = new Set<string>()
      const nodes = new Set<string>()
      const refs = new Set<string>()
      const edges = new Set<string>()
      switch (tag) {
        case "Row": {
          for (const r of records as ReadonlyArray<Extract<AuditRecord, { _tag: "Row" }>>) {
            runs.add(r.run_id)
            nodes.add(nodeName(r.run_id, r.source_node_id))
          }
          yield* self.resolve(sql, "run", runs)
          yield* self.resolve(sql, "node", nodes)
          yield* self.firstFree(sql, "row")
          const params: Array<unknown> = new Array(records.length * COLUMNS.ls_rows.length)
          let p = 0
          for (const r of records as ReadonlyArray<Extract<AuditRecord, { _tag: "Row" }>>) {
            const node = m.node.get(nodeName(r.run_id, r.source_node_id))
            if (node === undefined) return yield* Effect.fail(missing(`row ${r.row_id}`, r.source_node_id, "source node"))
            const key = self.next.row++
            m.row.set(r.row_id, key)
            params[p++] = key
            params[p++] = r.row_id
            params[p++] = m.run.get(r.run_id)
            params[p++] = node
            params[p++] = r.row_index
            params[p++] = r.source_data_hash
            params[p++] = r.source_data_json
            params[p++] = r.created_at
          }
          return yield* insertRows(sql, "ls_rows", COLUMNS.ls_rows, params)
        }
        case "Token": {
          for (const t of records as ReadonlyArray<Extract<AuditRecord, { _tag: "Token" }>>) {
            runs.add(t.run_id)
            refs.add(t.row_id)
          }
          yield* self.resolve(sql, "run", runs)
          yield* self.resolve(sql, "row", refs)
          yield* self.firstFree(sql, "token")
          const params: Array<unknown> = new Array(records.length * COLUMNS.ls_tokens.length)
          let p = 0
          for (const t of records as ReadonlyArray<Extract<AuditRecord, { _tag: "Token" }>>) {
            const row = m.row.get(t.row_id)
            if (row === undefined) return yield* Effect.fail(missing(`token ${t.token_id}`, t.row_id, "row"))
            const key = self.next.token++
            m.token.set(t.token_id, key)
            params[p++] = key
            params[p++] = t.token_id
            params[p++] = m.run.get(t.run_id)
            params[p++] = row
            params[p++] = t.fork_group_id ?? null
            params[p++] = t.join_group_id ?? null
            params[p++] = t.expand_group_id ?? null
            params[p++] = t.branch_name ?? null
            params[p++] = t.created_at
          }
          return yield* insertRows(sql, "ls_tokens", COLUMNS.ls_tokens, params)
        }
        case "NodeState": {
          for (const s of records as ReadonlyArray<Extract<AuditRecord, { _tag: "NodeState" }>>) {
            runs.add(s.run_id)
            nodes.add(nodeName(s.run_id, s.node_id))
            refs.add(s.token_id)
          }
          yield* self.resolve(sql, "run", runs)
          yield* self.resolve(sql, "node", nodes)
          yield* self.resolve(sql, "token", refs)
          yield* self.firstFree(sql, "state")
          const params: Array<unknown> = new Array(records.length * COLUMNS.ls_node_states.length)
          let p = 0
          for (const s of records as ReadonlyArray<Extract<AuditRecord, { _tag: "NodeState" }>>) {
            const token = m.token.get(s.token_id)
            if (token === undefined) return yield* Effect.fail(missing(`node state ${s.state_id}`, s.token_id, "token"))
            const node = m.node.get(nodeName(s.run_id, s.node_id))
            if (node === undefined) return yield* Effect.fail(missing(`node state ${s.state_id}`, s.node_id, "node"))
            const key = self.next.state++
            m.state.set(s.state_id, key)
            params[p++] = key
            params[p++] = s.state_id
            params[p++] = token
            params[p++] = m.run.get(s.run_id)
            params[p++] = node
            params[p++] = s.step_index
            params[p++] = s.attempt ?? 1
            params[p++] = s.status
            params[p++] = s.input_hash
            params[p++] = s.output_hash ?? null
            params[p++] = s.duration_ms ?? null
            params[p++] = s.error_json ?? null
            params[p++] = s.started_at
            params[p++] = s.completed_at ?? null
          }
          return yield* insertRows(sql, "ls_node_states", COLUMNS.ls_node_states, params)
        }
        case "RoutingEvent": {
          for (const e of records as ReadonlyArray<Extract<AuditRecord, { _tag: "RoutingEvent" }>>) {
            refs.add(e.state_id)
            edges.add(e.edge_id)
          }
          yield* self.resolve(sql, "state", refs)
          yield* self.resolve(sql, "edge", edges)
          const params: Array<unknown> = new Array(records.length * COLUMNS.ls_routing_events.length)
          let p = 0
          for (const e of records as ReadonlyArray<Extract<AuditRecord, { _tag: "RoutingEvent" }>>) {
            const state = m.state.get(e.state_id)
            if (state === undefined) return yield* Effect.fail(missing(`routing event ${e.event_id}`, e.state_id, "node state"))
            const edge = m.edge.get(e.edge_id)
            if (edge === undefined) return yield* Effect.fail(missing(`routing event ${e.event_id}`, e.edge_id, "edge"))
            params[p++] = e.event_id
            params[p++] = state
            params[p++] = edge
            params[p++] = e.routing_group_id
            params[p++] = e.ordinal ?? 0
            params[p++] = e.mode
            params[p++] = e.reason_json ?? null
            params[p++] = e.created_at
          }
          return yield* insertRows(sql, "ls_routing_events", COLUMNS.ls_routing_events, params)
        }
        case "Outcome": {
          for (const o of records as ReadonlyArray<Extract<AuditRecord, { _tag: "Outcome" }>>) {
            runs.add(o.run_id)
            refs.add(o.token_id)
          }
          yield* self.resolve(sql, "run", runs)
          yield* self.resolve(sql, "token", refs)
          const params: Array<unknown> = new Array(records.length * COLUMNS.ls_token_outcomes.length)
          let p = 0
          for (const o of records as ReadonlyArray<Extract<AuditRecord, { _tag: "Outcome" }>>) {
            const token = m.token.get(o.token_id)
            if (token === undefined) return yield* Effect.fail(missing(`outcome ${o.outcome_id}`, o.token_id, "token"))
            params[p++] = o.outcome_id
            params[p++] = m.run.get(o.run_id)
            params[p++] = token
            params[p++] = o.outcome
            params[p++] = o.is_terminal
            params[p++] = o.sink_name ?? null
            params[p++] = o.batch_id ?? null
            params[p++] = o.fork_group_id ?? null
            params[p++] = o.join_group_id ?? null
            params[p++] = o.expand_group_id ?? null
            params[p++] = o.error_hash ?? null
            params[p++] = o.context_json ?? null
            params[p++] = o.recorded_at
          }
          return yield* insertRows(sql, "ls_token_outcomes", COLUMNS.ls_token_outcomes, params)
        }
        default:
          return yield* Effect.dieMessage(`${tag} is not stored in a compact table`)
      }
    })
  }

  /**
   * After a committed flush: the rows and states of this flush are no longer needed in
   * memory (a later reference finds them in the database), and a token with its
   * terminal outcome written is done.
   */
  afterCommit(terminalTokens: ReadonlySet<string>): void {
    this.maps.row.clear()
    this.maps.state.clear()
    for (const t of terminalTokens) this.maps.token.delete(t)
  }
}
