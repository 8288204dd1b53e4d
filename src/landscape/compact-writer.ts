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
import { insertRows, RowParams } from "./statements.js"

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
const NODE_SEPARATOR = "\u0000"

/** How an error names each kind of record. */
const KIND_NAME: Record<Kind, string> = { run: "run", node: "node", edge: "edge", row: "row", token: "token", state: "node state" }

const missing = (what: string, id: string, kind: Kind) =>
  new RecorderError({
    reason: "ConstraintViolation",
    message: `FOREIGN KEY constraint failed: ${what} names ${KIND_NAME[kind]} ${id}, which is not in the Landscape`
  })

/**
 * The parameters of one flush's INSERTs into a compact table, with the references not
 * known in memory noted by where they go, to be found in the database and filled in.
 */
class Params extends RowParams {
  /**
   * Array, position, kind, id, and the kind and id of the record that named it: six
   * entries per unknown reference (the error names the record only if one is missing).
   */
  readonly unknown: Array<unknown> = []

  constructor(width: number, rows: number, private readonly owner: string) {
    super(width, rows)
  }

  /** The key of `id` from `map`, or a note to find it; `ownerId` is the referring record's id. */
  ref(map: ReadonlyMap<string, number>, kind: Kind, id: string, ownerId: string): void {
    const key = map.get(id)
    if (key === undefined) this.unknown.push(this.current, this.p, kind, id, this.owner, ownerId)
    this.current[this.p++] = key
  }

  /** A reference to a node, by run and node id. */
  unknownNode(runId: string, nodeId: string, ownerId: string): void {
    this.unknown.push(this.current, this.p, "node", `${runId}${NODE_SEPARATOR}${nodeId}`, this.owner, ownerId)
  }
}

/** The keys the recorder knows, across flushes. */
export class CompactKeys {
  private readonly maps: Record<Exclude<Kind, "node">, Map<string, number>> = {
    run: new Map(),
    edge: new Map(),
    row: new Map(),
    token: new Map(),
    state: new Map()
  }
  /** Node keys by run id, then node id. */
  private readonly nodes = new Map<string, Map<string, number>>()
  private next = { row: 0, token: 0, state: 0 }

  /** Forgets everything (after a failed flush: what it cached may not have been written). */
  reset(): void {
    for (const m of Object.values(this.maps)) m.clear()
    this.nodes.clear()
  }

  private nodesOf(runId: string): Map<string, number> {
    let m = this.nodes.get(runId)
    if (m === undefined) this.nodes.set(runId, m = new Map())
    return m
  }

  /** Finds in the database the references `params` could not, and fills them in. */
  private fill(sql: Sql, params: Params): Effect.Effect<void, SqlError | RecorderError> {
    const u = params.unknown
    if (u.length === 0) return Effect.void
    const self = this
    return Effect.gen(function*() {
      const wanted = new Map<Kind, Set<string>>()
      for (let i = 0; i < u.length; i += 6) {
        const kind = u[i + 2] as Kind
        let ids = wanted.get(kind)
        if (ids === undefined) wanted.set(kind, ids = new Set())
        ids.add(u[i + 3] as string)
      }
      for (const [kind, ids] of wanted) yield* self.lookUp(sql, kind, ids)
      for (let i = 0; i < u.length; i += 6) {
        const kind = u[i + 2] as Kind
        const id = u[i + 3] as string
        const key = kind === "node" ? self.nodeKey(id) : self.maps[kind].get(id)
        if (key === undefined) {
          return yield* Effect.fail(missing(`${u[i + 4] as string} ${u[i + 5] as string}`, kind === "node" ? id.split(NODE_SEPARATOR)[1]! : id, kind))
        }
        ;(u[i] as Array<unknown>)[u[i + 1] as number] = key
      }
    })
  }

  private nodeKey(name: string): number | undefined {
    const [runId, nodeId] = name.split(NODE_SEPARATOR) as [string, string]
    return this.nodes.get(runId)?.get(nodeId)
  }

  /** Looks up in the database ids of `kind` (a node as `run id NUL node id`). */
  private lookUp(sql: Sql, kind: Kind, ids: ReadonlySet<string>): Effect.Effect<void, SqlError> {
    if (kind === "node") {
      return Effect.forEach(ids, (name) => {
        const [runId, nodeId] = name.split(NODE_SEPARATOR) as [string, string]
        return Effect.map(
          sql<{ node_key: number }>`SELECT node_key FROM nodes WHERE run_id = ${runId} AND node_id = ${nodeId}`,
          (found) => {
            if (found[0] !== undefined) this.nodesOf(runId).set(nodeId, Number(found[0].node_key))
          }
        )
      }, { discard: true })
    }
    const map = this.maps[kind]
    const list = Array.from(ids)
    const { id, key, table } = LOOKUP[kind]
    return Effect.forEach(
      Array.from({ length: Math.ceil(list.length / LOOKUP_BATCH) }, (_, i) => list.slice(i * LOOKUP_BATCH, (i + 1) * LOOKUP_BATCH)),
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

  /** The run's key and its nodes' keys (a run's records almost always share both). */
  private runRef(params: Params, runId: string, ownerId: string): void {
    params.ref(this.maps.run, "run", runId, ownerId)
  }

  private nodeRef(params: Params, runId: string, nodeId: string, ownerId: string): void {
    const key = this.nodes.get(runId)?.get(nodeId)
    if (key === undefined) params.unknownNode(runId, nodeId, ownerId)
    params.push(key)
  }

  /** Writes `records` (all of the compact type `tag`) into their table. */
  write(sql: Sql, tag: InsertTag, records: ReadonlyArray<AuditRecord>): Effect.Effect<void, SqlError | RecorderError> {
    if (records.length === 0) return Effect.void
    const self = this
    const m = this.maps
    return Effect.gen(function*() {
      switch (tag) {
        case "Row": {
          yield* self.firstFree(sql, "row")
          const params = new Params(COLUMNS.ls_rows.length, records.length, "row")
          for (const r of records as ReadonlyArray<Extract<AuditRecord, { _tag: "Row" }>>) {
            params.row()
            const key = self.next.row++
            m.row.set(r.row_id, key)
            params.push(key)
            params.push(r.row_id)
            self.runRef(params, r.run_id, r.row_id)
            self.nodeRef(params, r.run_id, r.source_node_id, r.row_id)
            params.push(r.row_index)
            params.push(r.source_data_hash)
            params.push(r.source_data_json)
            params.push(r.created_at)
          }
          yield* self.fill(sql, params)
          return yield* insertRows(sql, "ls_rows", COLUMNS.ls_rows, params)
        }
        case "Token": {
          yield* self.firstFree(sql, "token")
          const params = new Params(COLUMNS.ls_tokens.length, records.length, "token")
          for (const t of records as ReadonlyArray<Extract<AuditRecord, { _tag: "Token" }>>) {
            params.row()
            const key = self.next.token++
            m.token.set(t.token_id, key)
            params.push(key)
            params.push(t.token_id)
            self.runRef(params, t.run_id, t.token_id)
            params.ref(m.row, "row", t.row_id, t.token_id)
            params.push(t.fork_group_id ?? null)
            params.push(t.join_group_id ?? null)
            params.push(t.expand_group_id ?? null)
            params.push(t.branch_name ?? null)
            params.push(t.created_at)
          }
          yield* self.fill(sql, params)
          return yield* insertRows(sql, "ls_tokens", COLUMNS.ls_tokens, params)
        }
        case "NodeState": {
          yield* self.firstFree(sql, "state")
          const params = new Params(COLUMNS.ls_node_states.length, records.length, "node state")
          for (const s of records as ReadonlyArray<Extract<AuditRecord, { _tag: "NodeState" }>>) {
            params.row()
            const key = self.next.state++
            m.state.set(s.state_id, key)
            params.push(key)
            params.push(s.state_id)
            params.ref(m.token, "token", s.token_id, s.state_id)
            self.runRef(params, s.run_id, s.state_id)
            self.nodeRef(params, s.run_id, s.node_id, s.state_id)
            params.push(s.step_index)
            params.push(s.attempt ?? 1)
            params.push(s.status)
            params.push(s.input_hash)
            params.push(s.output_hash ?? null)
            params.push(s.duration_ms ?? null)
            params.push(s.error_json ?? null)
            params.push(s.started_at)
            params.push(s.completed_at ?? null)
          }
          yield* self.fill(sql, params)
          return yield* insertRows(sql, "ls_node_states", COLUMNS.ls_node_states, params)
        }
        case "RoutingEvent": {
          const params = new Params(COLUMNS.ls_routing_events.length, records.length, "routing event")
          for (const e of records as ReadonlyArray<Extract<AuditRecord, { _tag: "RoutingEvent" }>>) {
            params.row()
            params.push(e.event_id)
            params.ref(m.state, "state", e.state_id, e.event_id)
            params.ref(m.edge, "edge", e.edge_id, e.event_id)
            params.push(e.routing_group_id)
            params.push(e.ordinal ?? 0)
            params.push(e.mode)
            params.push(e.reason_json ?? null)
            params.push(e.created_at)
          }
          yield* self.fill(sql, params)
          return yield* insertRows(sql, "ls_routing_events", COLUMNS.ls_routing_events, params)
        }
        case "Outcome": {
          const params = new Params(COLUMNS.ls_token_outcomes.length, records.length, "outcome")
          for (const o of records as ReadonlyArray<Extract<AuditRecord, { _tag: "Outcome" }>>) {
            params.row()
            params.push(o.outcome_id)
            self.runRef(params, o.run_id, o.outcome_id)
            params.ref(m.token, "token", o.token_id, o.outcome_id)
            params.push(o.outcome)
            params.push(o.is_terminal)
            params.push(o.sink_name ?? null)
            params.push(o.batch_id ?? null)
            params.push(o.fork_group_id ?? null)
            params.push(o.join_group_id ?? null)
            params.push(o.expand_group_id ?? null)
            params.push(o.error_hash ?? null)
            params.push(o.context_json ?? null)
            params.push(o.recorded_at)
          }
          yield* self.fill(sql, params)
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
