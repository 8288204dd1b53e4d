/**
 * `SqlRecorder`: the Recorder port over `@effect/sql`, with a write buffer.
 *
 * Records are appended to an in-memory buffer and written in chunked multi-row
 * INSERTs inside one short transaction per flush, tables in foreign-key order. A node
 * state (or batch) completed while still buffered is updated in place, so the common
 * case never needs an UPDATE statement. Flushes are serialised; appends made while a
 * flush is running go to the next buffer.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Effect, Either, Layer } from "effect"
import { hostname } from "node:os"
import { CANONICAL_VERSION, canonicalJson, sha256Hex } from "../core/canonical.js"
import {
  newArtifactId,
  newBatchId,
  newCheckpointId,
  newEdgeId,
  newErrorId,
  newEventId,
  newOutcomeId,
  newRowId,
  newRunId,
  newStateId,
  newTokenId,
  type RunId
} from "../core/ids.js"
import { Recorder, RecorderError, type RecorderService, type RunView } from "../services/recorder.js"
import {
  type AuditRecord,
  type BatchRecord,
  type BatchUpdate,
  type InsertTag,
  isTerminalOutcome,
  type NodeStateCompletion,
  type NodeStateRecord,
  type Outcome,
  OUTCOMES,
  type RunStatus,
  TABLE_ORDER
} from "../services/records.js"

/** SQLite allows 32,766 parameters per statement; stay below it. */
const MAX_PARAMS = 32_000
/**
 * Rows per INSERT. Each distinct statement text is prepared and cached by the client,
 * and a large prepared statement costs memory: full chunks share one text, and a
 * remainder is split into powers of two, so a table needs at most ~9 texts.
 */
const MAX_ROWS_PER_STATEMENT = 256

export interface SqlRecorderOptions {
  /** Buffered records that trigger an automatic flush. */
  readonly maxBufferedRecords?: number
}

class Buffer {
  readonly byTag = new Map<InsertTag, Array<AuditRecord>>()
  readonly states = new Map<string, NodeStateRecord>()
  readonly batches = new Map<string, BatchRecord>()
  readonly stateUpdates: Array<NodeStateCompletion> = []
  readonly batchUpdates: Array<BatchUpdate> = []
  readonly terminalTokens = new Set<string>()
  size = 0
}

const invalid = (message: string) => new RecorderError({ reason: "InvalidInput", message })

const missingRun = (runId: string) =>
  new RecorderError({ reason: "MissingRun", message: `no run with id ${runId} in this Landscape` })

const fromSql = (what: string) => (error: SqlError): RecorderError => {
  const text = String((error.cause as { message?: unknown } | undefined)?.message ?? error.message)
  if (/constraint/i.test(text)) {
    return new RecorderError({ reason: "ConstraintViolation", message: `${what}: ${text}`, cause: error })
  }
  return new RecorderError({ reason: "Database", message: `${what}: ${text}`, cause: error })
}

/** Canonical JSON of `value`, or an InvalidInput error naming the path of the bad value. */
const jsonOf = (what: string, value: unknown): Either.Either<string, RecorderError> =>
  Either.mapLeft(canonicalJson(value), (e) => invalid(`${what}: ${e.message}`))

const isNonEmptyString = (v: unknown): v is string => typeof v === "string" && v.length > 0
const isIndex = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0

const columnsCache = new Map<string, ReadonlyArray<string>>()
const columnsOf = (tag: string, sample: AuditRecord): ReadonlyArray<string> => {
  let cols = columnsCache.get(tag)
  if (cols === undefined) {
    cols = Object.keys(sample).filter((k) => k !== "_tag")
    columnsCache.set(tag, cols)
  }
  return cols
}

const statementCache = new Map<string, string>()
const insertSql = (table: string, cols: ReadonlyArray<string>, rows: number): string => {
  const key = `${table}:${rows}`
  let text = statementCache.get(key)
  if (text === undefined) {
    const one = `(${cols.map(() => "?").join(",")})`
    text = `INSERT INTO ${table} (${cols.join(",")}) VALUES ${Array.from({ length: rows }, () => one).join(",")}`
    statementCache.set(key, text)
  }
  return text
}

const RUN_STATUSES: ReadonlyArray<RunStatus> = ["running", "completed", "failed", "interrupted"]

export const makeSqlRecorder = (options: SqlRecorderOptions = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const maxBuffered = options.maxBufferedRecords ?? 10_000
    const flushLock = yield* Effect.makeSemaphore(1)
    let buffer = new Buffer()
    /** Status of runs this recorder has seen: appends are refused unless running. */
    const runStatus = new Map<string, RunStatus>()
    let lastCheckedRun = ""

    const nowIso = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms).toISOString())

    const knownRun = (runId: string): Effect.Effect<void, RecorderError> => {
      if (runId === lastCheckedRun) return Effect.void
      return Effect.suspend(() => {
        if (!isNonEmptyString(runId)) return Effect.fail(invalid(`run id must be a non-empty string, got ${JSON.stringify(runId)}`))
        const cached = runStatus.get(runId)
        const check = (status: RunStatus | undefined): Effect.Effect<void, RecorderError> => {
          if (status === undefined) {
            return Effect.fail(missingRun(runId))
          }
          if (status !== "running") {
            return Effect.fail(
              new RecorderError({ reason: "RunNotRunning", message: `run ${runId} is ${status}; its trail is closed to new records` })
            )
          }
          lastCheckedRun = runId
          return Effect.void
        }
        if (cached !== undefined) return check(cached)
        return sql<{ status: RunStatus }>`SELECT status FROM runs WHERE run_id = ${runId}`.pipe(
          Effect.mapError(fromSql("reading run")),
          Effect.flatMap((rows) => {
            const status = rows[0]?.status
            if (status !== undefined) runStatus.set(runId, status)
            return check(status)
          })
        )
      })
    }

    const push = (b: Buffer, record: AuditRecord): RecorderError | undefined => {
      switch (record._tag) {
        case "NodeStateCompletion": {
          const state = b.states.get(record.state_id)
          if (state !== undefined) {
            if (state.status !== "open") return invalid(`node state ${record.state_id} is already ${state.status}`)
            state.status = record.status
            state.output_hash = record.output_hash
            state.duration_ms = record.duration_ms
            state.error_json = record.error_json
            state.completed_at = record.completed_at
          } else {
            b.stateUpdates.push(record)
            b.size++
          }
          return undefined
        }
        case "BatchUpdate": {
          const batch = b.batches.get(record.batch_id)
          if (batch !== undefined) {
            batch.status = record.status
            if (record.trigger_type !== null) batch.trigger_type = record.trigger_type
            if (record.trigger_reason !== null) batch.trigger_reason = record.trigger_reason
            if (record.error_json !== null) batch.error_json = record.error_json
            if (record.completed_at !== null) batch.completed_at = record.completed_at
          } else {
            b.batchUpdates.push(record)
            b.size++
          }
          return undefined
        }
        case "NodeState":
          // Only an open state can still change; a finished one goes straight to its list.
          if (record.status !== "open") break
          b.states.set(record.state_id, { ...record })
          b.size++
          return undefined
        case "Batch":
          b.batches.set(record.batch_id, { ...record })
          b.size++
          return undefined
        case "Outcome": {
          if (!OUTCOMES.includes(record.outcome)) return invalid(`unknown outcome ${JSON.stringify(record.outcome)}`)
          if (record.is_terminal === 1) {
            if (b.terminalTokens.has(record.token_id)) {
              return new RecorderError({
                reason: "DuplicateTerminalOutcome",
                message: `token ${record.token_id} already has a terminal outcome; refusing ${record.outcome}`
              })
            }
            b.terminalTokens.add(record.token_id)
          }
          break
        }
        default:
          break
      }
      let list = b.byTag.get(record._tag)
      if (list === undefined) {
        if (!TABLE_ORDER.some(([tag]) => tag === record._tag)) {
          return invalid(`unknown record type ${JSON.stringify((record as { _tag?: unknown })._tag)}`)
        }
        list = []
        b.byTag.set(record._tag, list)
      }
      list.push(record)
      b.size++
      return undefined
    }

    const insertAll = (table: string, records: ReadonlyArray<AuditRecord>) =>
      Effect.gen(function*() {
        if (records.length === 0) return
        const cols = columnsOf(records[0]!._tag, records[0]!)
        const perStatement = Math.max(1, Math.min(MAX_ROWS_PER_STATEMENT, Math.floor(MAX_PARAMS / cols.length)))
        for (let start = 0; start < records.length;) {
          const left = records.length - start
          const size = left >= perStatement ? perStatement : 2 ** Math.floor(Math.log2(left))
          const end = start + size
          const params: Array<unknown> = new Array(size * cols.length)
          let p = 0
          for (let i = start; i < end; i++) {
            const rec = records[i] as unknown as Record<string, unknown>
            for (const col of cols) {
              const v = rec[col]
              params[p++] = v === undefined ? null : v
            }
          }
          yield* sql.unsafe(insertSql(table, cols, size), params)
          start = end
        }
      })

    const writeBuffer = (b: Buffer) =>
      Effect.gen(function*() {
        for (const [tag, table] of TABLE_ORDER) {
          if (tag === "NodeState") {
            yield* insertAll(table, [...(b.byTag.get("NodeState") ?? []), ...b.states.values()])
          } else if (tag === "Batch") {
            yield* insertAll(table, Array.from(b.batches.values()))
          } else {
            yield* insertAll(table, b.byTag.get(tag) ?? [])
          }
        }
        for (const u of b.stateUpdates) {
          const rows = yield* sql.unsafe<{ state_id: string }>(
            `UPDATE node_states SET status = ?, output_hash = ?, duration_ms = ?, error_json = ?, completed_at = ?
             WHERE state_id = ? AND status = 'open' RETURNING state_id`,
            [u.status, u.output_hash, u.duration_ms, u.error_json, u.completed_at, u.state_id]
          )
          if (rows.length === 0) {
            return yield* Effect.fail(invalid(`node state ${u.state_id} does not exist or is not open`))
          }
        }
        for (const u of b.batchUpdates) {
          const rows = yield* sql.unsafe<{ batch_id: string }>(
            `UPDATE batches SET status = ?, trigger_type = COALESCE(?, trigger_type), trigger_reason = COALESCE(?, trigger_reason),
               error_json = COALESCE(?, error_json), completed_at = COALESCE(?, completed_at)
             WHERE batch_id = ? RETURNING batch_id`,
            [u.status, u.trigger_type, u.trigger_reason, u.error_json, u.completed_at, u.batch_id]
          )
          if (rows.length === 0) return yield* Effect.fail(invalid(`batch ${u.batch_id} does not exist`))
        }
      })

    /** Which buffered terminal outcomes collide with ones already in the database. */
    const findDuplicateTerminals = (b: Buffer) =>
      Effect.gen(function*() {
        const ids = Array.from(b.terminalTokens)
        const dups: Array<string> = []
        for (let i = 0; i < ids.length; i += 500) {
          const chunk = ids.slice(i, i + 500)
          const rows = yield* sql.unsafe<{ token_id: string }>(
            `SELECT token_id FROM token_outcomes WHERE is_terminal = 1 AND token_id IN (${chunk.map(() => "?").join(",")})`,
            chunk
          )
          for (const r of rows) dups.push(r.token_id)
        }
        return dups
      })

    const writeInTransaction = (b: Buffer): Effect.Effect<void, RecorderError> =>
      sql.withTransaction(writeBuffer(b)).pipe(
        Effect.catchTag("SqlError", (error) => Effect.fail(fromSql("writing the audit trail")(error)))
      )

    const flushBuffer = (b: Buffer): Effect.Effect<void, RecorderError> =>
      writeInTransaction(b).pipe(
        Effect.catchIf(
          (e) => e.reason === "ConstraintViolation" && /token_outcomes/.test(e.message),
          (constraintError) =>
            Effect.gen(function*() {
              // Keep the rest of the trail: drop the offending outcomes, write the others.
              const found = yield* findDuplicateTerminals(b).pipe(Effect.mapError(fromSql("checking outcomes")))
              const dups = new Set(found)
              if (dups.size === 0) return yield* Effect.fail(constraintError)
              const outcomes = b.byTag.get("Outcome") ?? []
              b.byTag.set(
                "Outcome",
                outcomes.filter((r) => !(r._tag === "Outcome" && r.is_terminal === 1 && dups.has(r.token_id)))
              )
              yield* writeInTransaction(b)
              return yield* Effect.fail(
                new RecorderError({
                  reason: "DuplicateTerminalOutcome",
                  message: `token ${found.join(", ")} already has a terminal outcome in the Landscape`
                })
              )
            })
        )
      )

    // A flush is never cut short: records taken from the buffer reach the database
    // (or the flush fails) even when the fiber that asked for it is interrupted.
    const flush: Effect.Effect<void, RecorderError> = flushLock.withPermits(1)(
      Effect.uninterruptible(Effect.suspend(() => {
        if (buffer.size === 0) return Effect.void
        const taken = buffer
        buffer = new Buffer()
        return flushBuffer(taken)
      }))
    )

    const append = (records: ReadonlyArray<AuditRecord>): Effect.Effect<void, RecorderError> =>
      Effect.suspend(() => {
        // Check every run id named by the batch before touching the buffer.
        let runCheck: Effect.Effect<void, RecorderError> = Effect.void
        for (const r of records) {
          const runId = (r as { run_id?: unknown }).run_id
          if (runId !== undefined && runId !== lastCheckedRun) {
            runCheck = Effect.zipRight(runCheck, knownRun(runId as string))
          }
        }
        return Effect.flatMap(runCheck, () => {
          for (const r of records) {
            const error = push(buffer, r)
            if (error !== undefined) return Effect.fail(error)
          }
          return buffer.size >= maxBuffered ? flush : Effect.void
        })
      })

    const appendOne = (record: AuditRecord) => append([record])

    const readRun = (runId: string) =>
      sql<Record<string, unknown>>`SELECT * FROM runs WHERE run_id = ${runId}`.pipe(Effect.mapError(fromSql("reading run")))

    const toView = (
      row: Record<string, unknown>,
      rows: number,
      outcomes: Partial<Record<Outcome, number>>
    ): RunView => ({
      run_id: row.run_id as RunId,
      status: row.status as RunStatus,
      started_at: row.started_at as string,
      completed_at: (row.completed_at as string | null) ?? null,
      config_hash: row.config_hash as string,
      canonical_version: row.canonical_version as string,
      error_message: (row.error_message as string | null) ?? null,
      export_status: (row.export_status as RunView["export_status"]) ?? null,
      export_error: (row.export_error as string | null) ?? null,
      export_format: (row.export_format as string | null) ?? null,
      export_sink: (row.export_sink as string | null) ?? null,
      exported_at: (row.exported_at as string | null) ?? null,
      result: typeof row.result_json === "string" ? JSON.parse(row.result_json) : null,
      counts: { rows, outcomes }
    })

    const countsFor = (runId: string | undefined) =>
      Effect.gen(function*() {
        const rowCounts = yield* (runId === undefined
          ? sql<{ run_id: string; n: number }>`SELECT run_id, COUNT(*) AS n FROM rows GROUP BY run_id`
          : sql<{ run_id: string; n: number }>`SELECT run_id, COUNT(*) AS n FROM rows WHERE run_id = ${runId} GROUP BY run_id`)
        const outcomeCounts = yield* (runId === undefined
          ? sql<{ run_id: string; outcome: Outcome; n: number }>`
              SELECT run_id, outcome, COUNT(*) AS n FROM token_outcomes WHERE is_terminal = 1 GROUP BY run_id, outcome`
          : sql<{ run_id: string; outcome: Outcome; n: number }>`
              SELECT run_id, outcome, COUNT(*) AS n FROM token_outcomes
              WHERE run_id = ${runId} AND is_terminal = 1 GROUP BY run_id, outcome`)
        const rows = new Map(rowCounts.map((r) => [r.run_id, r.n]))
        const outcomes = new Map<string, Partial<Record<Outcome, number>>>()
        for (const r of outcomeCounts) {
          const m = outcomes.get(r.run_id) ?? {}
          m[r.outcome] = r.n
          outcomes.set(r.run_id, m)
        }
        return { rows, outcomes }
      }).pipe(Effect.mapError(fromSql("counting outcomes")))

    const service: RecorderService = {
      now: nowIso,

      beginRun: Effect.fn("Recorder.beginRun")(function*(input) {
        const settingsJson = yield* jsonOf("run settings", input.settings)
        const schemaJson = input.sourceSchema === undefined ? null : yield* jsonOf("source schema", input.sourceSchema)
        const runId = input.runId ?? newRunId()
        if (!isNonEmptyString(runId)) return yield* Effect.fail(invalid(`run id must be a non-empty string`))
        const startedAt = yield* nowIso
        yield* sql`INSERT INTO runs ${
          sql.insert({
            run_id: runId,
            status: "running",
            started_at: startedAt,
            config_hash: sha256Hex(settingsJson),
            settings_json: settingsJson,
            canonical_version: CANONICAL_VERSION,
            source_schema_json: schemaJson,
            owner_pid: process.pid,
            owner_host: hostname()
          })
        }`.pipe(Effect.mapError(fromSql(`starting run ${runId}`)))
        runStatus.set(runId, "running")
        return runId
      }),

      completeRun: Effect.fn("Recorder.completeRun")(function*(runId, end) {
        if (!RUN_STATUSES.includes(end.status) || (end.status as RunStatus) === "running") {
          return yield* Effect.fail(invalid(`a run ends completed, failed or interrupted, not ${JSON.stringify(end.status)}`))
        }
        yield* knownRun(runId)
        const resultJson = end.result === undefined ? null : yield* jsonOf("run result", end.result)
        yield* flush
        const at = yield* nowIso
        yield* sql.withTransaction(
          Effect.gen(function*() {
            // No node state is left open: a run that stopped mid-row closes them as failed.
            yield* sql`UPDATE node_states SET status = 'failed', completed_at = ${at},
                         error_json = ${JSON.stringify({ reason: `run ${end.status}` })}
                       WHERE run_id = ${runId} AND status = 'open'`
            yield* sql`UPDATE operations SET status = 'failed', completed_at = ${at}, error_message = ${`run ${end.status}`}
                       WHERE run_id = ${runId} AND status = 'open'`
            yield* sql`UPDATE runs SET status = ${end.status}, completed_at = ${at},
                         error_message = ${end.errorMessage ?? null}, result_json = ${resultJson}
                       WHERE run_id = ${runId}`
          })
        ).pipe(Effect.mapError(fromSql(`completing run ${runId}`)))
        runStatus.set(runId, end.status)
        if (lastCheckedRun === runId) lastCheckedRun = ""
      }),

      append,
      flush,

      registerNode: (input) =>
        Effect.gen(function*() {
          if (!isNonEmptyString(input.nodeId)) return yield* Effect.fail(invalid(`node id must be a non-empty string`))
          if (!isIndex(input.sequence)) return yield* Effect.fail(invalid(`node sequence must be a non-negative integer`))
          const configJson = yield* jsonOf(`config of node ${input.nodeId}`, input.config)
          yield* appendOne({
            _tag: "Node",
            run_id: input.runId,
            node_id: input.nodeId,
            plugin_name: input.pluginName,
            node_type: input.nodeType,
            name: input.name,
            config_hash: sha256Hex(configJson),
            config_json: configJson,
            sequence: input.sequence
          })
        }),

      registerEdge: (input) =>
        Effect.gen(function*() {
          const edgeId = input.edgeId ?? newEdgeId()
          if (!isNonEmptyString(input.label)) return yield* Effect.fail(invalid(`edge label must be a non-empty string`))
          yield* appendOne({
            _tag: "Edge",
            edge_id: edgeId,
            run_id: input.runId,
            from_node_id: input.fromNodeId,
            to_node_id: input.toNodeId,
            label: input.label,
            mode: input.mode
          })
          return edgeId
        }),

      createRow: (input) =>
        Effect.gen(function*() {
          if (!isIndex(input.rowIndex)) {
            return yield* Effect.fail(invalid(`row index must be a non-negative integer, got ${String(input.rowIndex)}`))
          }
          const json = yield* jsonOf(`row ${input.rowIndex}`, input.data)
          const rowId = newRowId()
          yield* appendOne({
            _tag: "Row",
            row_id: rowId,
            run_id: input.runId,
            source_node_id: input.sourceNodeId,
            row_index: input.rowIndex,
            source_data_hash: sha256Hex(json),
            source_data_json: json,
            created_at: yield* nowIso
          })
          return rowId
        }),

      createToken: (input) =>
        Effect.gen(function*() {
          if (!isNonEmptyString(input.rowId)) return yield* Effect.fail(invalid(`row id must be a non-empty string`))
          const tokenId = newTokenId()
          const at = yield* nowIso
          const records: Array<AuditRecord> = [{
            _tag: "Token",
            token_id: tokenId,
            run_id: input.runId,
            row_id: input.rowId,
            fork_group_id: input.forkGroupId ?? null,
            join_group_id: input.joinGroupId ?? null,
            expand_group_id: input.expandGroupId ?? null,
            branch_name: input.branchName ?? null,
            created_at: at
          }]
          ;(input.parents ?? []).forEach((parent, ordinal) =>
            records.push({ _tag: "TokenParent", token_id: tokenId, parent_token_id: parent, ordinal })
          )
          yield* append(records)
          return tokenId
        }),

      beginNodeState: (input) =>
        Effect.gen(function*() {
          const attempt = input.attempt ?? 1
          if (!isIndex(input.stepIndex)) return yield* Effect.fail(invalid(`step index must be a non-negative integer`))
          if (!isIndex(attempt) || attempt < 1) return yield* Effect.fail(invalid(`attempt must be a positive integer`))
          const json = yield* jsonOf(`input of node ${input.nodeId}`, input.input)
          const stateId = newStateId()
          yield* appendOne({
            _tag: "NodeState",
            state_id: stateId,
            token_id: input.tokenId,
            run_id: input.runId,
            node_id: input.nodeId,
            step_index: input.stepIndex,
            attempt,
            status: "open",
            input_hash: sha256Hex(json),
            output_hash: null,
            duration_ms: null,
            error_json: null,
            started_at: yield* nowIso,
            completed_at: null
          })
          return stateId
        }),

      completeNodeState: (input) =>
        Effect.gen(function*() {
          if (input.status !== "completed" && input.status !== "failed") {
            return yield* Effect.fail(invalid(`a node state completes as completed or failed, not ${JSON.stringify(input.status)}`))
          }
          if (typeof input.durationMs !== "number" || !(input.durationMs >= 0)) {
            return yield* Effect.fail(invalid(`duration must be a non-negative number of milliseconds`))
          }
          const outputHash = input.output === undefined ? null : sha256Hex(yield* jsonOf("node output", input.output))
          const errorJson = input.error === undefined ? null : yield* jsonOf("node error", input.error)
          yield* appendOne({
            _tag: "NodeStateCompletion",
            state_id: input.stateId,
            status: input.status,
            output_hash: outputHash,
            duration_ms: input.durationMs,
            error_json: errorJson,
            completed_at: yield* nowIso
          })
        }),

      recordRoutingEvent: (input) =>
        Effect.gen(function*() {
          const reasonJson = input.reason === undefined ? null : yield* jsonOf("routing reason", input.reason)
          yield* appendOne({
            _tag: "RoutingEvent",
            event_id: newEventId(),
            state_id: input.stateId,
            edge_id: input.edgeId,
            routing_group_id: input.routingGroupId ?? newEventId(),
            ordinal: input.ordinal ?? 0,
            mode: input.mode,
            reason_json: reasonJson,
            created_at: yield* nowIso
          })
        }),

      recordOutcome: (input) =>
        Effect.gen(function*() {
          if (!OUTCOMES.includes(input.outcome)) {
            return yield* Effect.fail(invalid(`unknown outcome ${JSON.stringify(input.outcome)}; expected one of ${OUTCOMES.join(", ")}`))
          }
          if (!isNonEmptyString(input.tokenId)) return yield* Effect.fail(invalid(`token id must be a non-empty string`))
          const errorHash = input.error === undefined ? null : sha256Hex(yield* jsonOf("outcome error", input.error))
          const contextJson = input.context === undefined ? null : yield* jsonOf("outcome context", input.context)
          yield* appendOne({
            _tag: "Outcome",
            outcome_id: newOutcomeId(),
            run_id: input.runId,
            token_id: input.tokenId,
            outcome: input.outcome,
            is_terminal: isTerminalOutcome(input.outcome) ? 1 : 0,
            sink_name: input.sinkName ?? null,
            batch_id: input.batchId ?? null,
            fork_group_id: null,
            join_group_id: null,
            expand_group_id: null,
            error_hash: errorHash,
            context_json: contextJson,
            recorded_at: yield* nowIso
          })
        }),

      createBatch: (input) =>
        Effect.gen(function*() {
          const batchId = newBatchId()
          yield* appendOne({
            _tag: "Batch",
            batch_id: batchId,
            run_id: input.runId,
            aggregation_node_id: input.aggregationNodeId,
            trigger_type: null,
            trigger_reason: null,
            status: "draft",
            attempt: input.attempt ?? 1,
            error_json: null,
            created_at: yield* nowIso,
            completed_at: null
          })
          return batchId
        }),

      updateBatch: (input) =>
        Effect.gen(function*() {
          const errorJson = input.error === undefined ? null : yield* jsonOf("batch error", input.error)
          const done = input.status === "completed" || input.status === "failed"
          yield* appendOne({
            _tag: "BatchUpdate",
            batch_id: input.batchId,
            status: input.status,
            trigger_type: input.triggerType ?? null,
            trigger_reason: input.triggerReason ?? null,
            error_json: errorJson,
            completed_at: done ? yield* nowIso : null
          })
        }),

      addBatchMember: (input) =>
        isIndex(input.ordinal)
          ? appendOne({ _tag: "BatchMember", batch_id: input.batchId, token_id: input.tokenId, ordinal: input.ordinal })
          : Effect.fail(invalid(`batch member ordinal must be a non-negative integer`)),

      addBatchOutput: (input) =>
        isIndex(input.ordinal)
          ? appendOne({ _tag: "BatchOutput", batch_id: input.batchId, token_id: input.tokenId, ordinal: input.ordinal })
          : Effect.fail(invalid(`batch output ordinal must be a non-negative integer`)),

      recordArtifact: (input) =>
        Effect.gen(function*() {
          if (!isIndex(input.sizeBytes)) return yield* Effect.fail(invalid(`artifact size must be a non-negative integer`))
          yield* appendOne({
            _tag: "Artifact",
            artifact_id: newArtifactId(),
            run_id: input.runId,
            sink_node_id: input.sinkNodeId,
            sink_name: input.sinkName,
            artifact_type: input.artifactType,
            path_or_uri: input.pathOrUri,
            content_hash: input.contentHash,
            size_bytes: input.sizeBytes,
            created_at: yield* nowIso
          })
        }),

      recordValidationError: (input) =>
        Effect.gen(function*() {
          const json = yield* jsonOf("invalid row", input.row)
          yield* appendOne({
            _tag: "ValidationError",
            error_id: newErrorId(),
            run_id: input.runId,
            node_id: input.nodeId,
            row_id: input.rowId ?? null,
            row_hash: sha256Hex(json),
            row_json: json,
            error: input.error,
            schema_mode: input.schemaMode,
            destination: input.destination,
            created_at: yield* nowIso
          })
        }),

      recordTransformError: (input) =>
        Effect.gen(function*() {
          const json = yield* jsonOf("row", input.row)
          const details = yield* jsonOf("error details", input.details)
          yield* appendOne({
            _tag: "TransformError",
            error_id: newErrorId(),
            run_id: input.runId,
            token_id: input.tokenId,
            node_id: input.nodeId,
            state_id: input.stateId ?? null,
            row_hash: sha256Hex(json),
            row_json: json,
            error_details_json: details,
            destination: input.destination,
            created_at: yield* nowIso
          })
        }),

      recordCheckpoint: (input) =>
        Effect.gen(function*() {
          if (!isIndex(input.sequenceNumber)) return yield* Effect.fail(invalid(`checkpoint sequence must be a non-negative integer`))
          const agg = input.aggregationState === undefined ? null : yield* jsonOf("aggregation state", input.aggregationState)
          const sink = input.sinkState === undefined ? null : yield* jsonOf("sink state", input.sinkState)
          yield* appendOne({
            _tag: "Checkpoint",
            checkpoint_id: newCheckpointId(),
            run_id: input.runId,
            token_id: input.tokenId ?? null,
            node_id: input.nodeId ?? null,
            sequence_number: input.sequenceNumber,
            aggregation_state_json: agg,
            sink_state_json: sink,
            topology_hash: input.topologyHash,
            created_at: yield* nowIso
          })
        }),

      setExportStatus: Effect.fn("Recorder.setExportStatus")(function*(runId, update) {
        const rows = yield* readRun(runId)
        if (rows.length === 0) {
          return yield* Effect.fail(missingRun(runId))
        }
        yield* sql`UPDATE runs SET export_status = ${update.export_status},
                     export_error = ${update.export_error ?? null},
                     export_format = COALESCE(${update.export_format ?? null}, export_format),
                     export_sink = COALESCE(${update.export_sink ?? null}, export_sink),
                     exported_at = COALESCE(${update.exported_at ?? null}, exported_at)
                   WHERE run_id = ${runId}`.pipe(Effect.mapError(fromSql(`recording export of run ${runId}`)))
      }),

      listRuns: Effect.gen(function*() {
        yield* flush
        const runs = yield* sql<Record<string, unknown>>`SELECT * FROM runs ORDER BY started_at, run_id`.pipe(
          Effect.mapError(fromSql("listing runs"))
        )
        const { outcomes, rows } = yield* countsFor(undefined)
        return runs.map((r) => toView(r, rows.get(r.run_id as string) ?? 0, outcomes.get(r.run_id as string) ?? {}))
      }),

      getRun: Effect.fn("Recorder.getRun")(function*(runId) {
        yield* flush
        const rows = yield* readRun(runId)
        const row = rows[0]
        if (row === undefined) {
          return yield* Effect.fail(missingRun(runId))
        }
        const counts = yield* countsFor(runId)
        return toView(row, counts.rows.get(runId) ?? 0, counts.outcomes.get(runId) ?? {})
      }),

      resolveRunId: Effect.fn("Recorder.resolveRunId")(function*(idOrLatest) {
        if (idOrLatest === "latest") {
          const rows = yield* sql<{ run_id: RunId }>`SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1`.pipe(
            Effect.mapError(fromSql("finding the latest run"))
          )
          const first = rows[0]
          if (first === undefined) {
            return yield* Effect.fail(new RecorderError({ reason: "MissingRun", message: `this Landscape has no runs yet` }))
          }
          return first.run_id
        }
        const rows = yield* readRun(idOrLatest)
        if (rows.length === 0) {
          return yield* Effect.fail(missingRun(idOrLatest))
        }
        return idOrLatest as RunId
      })
    }

    // Whatever is still buffered when the recorder's scope closes reaches the database.
    yield* Effect.addFinalizer(() => flush.pipe(Effect.ignoreLogged))
    return service
  })

/** The Recorder over whatever `SqlClient` is provided (migrations already applied). */
export const SqlRecorderLive = (options?: SqlRecorderOptions) => Layer.scoped(Recorder, makeSqlRecorder(options))

