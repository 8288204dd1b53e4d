/**
 * Recorder benchmark: the buffered SqlRecorder writing the audit records of 100k rows
 * to a file Landscape, next to plain better-sqlite3 writing the same records to the
 * same schema (multi-row prepared INSERTs in transactions).
 *
 * Per row the engine records: the row, its token, the gate's node state, the routing
 * event, the sink's node state and the outcome (6 records), after a node/edge setup.
 * Records are built before the clock starts; both sides take the same objects.
 */
import { Effect } from "effect"
import * as NodePath from "node:path"
import { canonicalJsonUnsafe, sha256Hex } from "../src/core/canonical.js"
import {
  type EdgeId,
  newEdgeId,
  newOutcomeId,
  newRowId,
  newRunId,
  newStateId,
  newTokenId,
  type NodeId,
  type RunId
} from "../src/core/ids.js"
import type { AuditRecord, InsertTag } from "../src/services/records.js"
import { SqliteLandscape } from "../src/landscape/sqlite.js"
import { TABLE_ORDER, TABLES } from "../src/landscape/tables.js"
import { Recorder } from "../src/services/recorder.js"
import {
  bestOf,
  dbSize,
  fmtInt,
  fmtMb,
  fmtMs,
  gc,
  makeTempDir,
  migrateLandscape,
  openRaw,
  prng,
  RawInserter,
  removeDir
} from "./support.js"

const ROWS = 100_000
/** Rows per append call in chunked mode: the csv source's batch size. */
const CHUNK_ROWS = 256
/** Records per transaction on the raw side: the recorder's default buffer. */
const RAW_RECORDS_PER_TRANSACTION = 20_000
const TRIALS = 2

interface Workload {
  readonly runId: RunId
  readonly setup: ReadonlyArray<AuditRecord>
  readonly perRow: ReadonlyArray<ReadonlyArray<AuditRecord>>
  readonly total: number
  readonly countsByTable: ReadonlyMap<string, number>
}

const CATEGORIES = ["retail", "wholesale", "online", "partner"]

/** The records the engine would append for a csv → gate → two csv sinks run of `rows` rows. */
const buildWorkload = (rows: number): Workload => {
  const runId = newRunId()
  const node = (type: string, name: string) => `${type}_${name}_0123456789ab` as NodeId
  const source = node("source", "source")
  const gate = node("gate", "amount_threshold")
  const output = node("sink", "output")
  const high = node("sink", "high_values")
  const nodes = [
    [source, "csv", "source", "source"],
    [gate, "gate", "gate", "amount_threshold"],
    [output, "csv", "sink", "output"],
    [high, "csv", "sink", "high_values"]
  ] as const
  const setup: Array<AuditRecord> = nodes.map(([nodeId, plugin, type, name], sequence) => {
    const configJson = canonicalJsonUnsafe({ plugin, name })
    return {
      _tag: "Node",
      run_id: runId,
      node_id: nodeId,
      plugin_name: plugin,
      node_type: type,
      name,
      config_hash: sha256Hex(configJson),
      config_json: configJson,
      sequence
    }
  })
  const edges: Record<string, EdgeId> = { source: newEdgeId(), true: newEdgeId(), false: newEdgeId() }
  setup.push(
    { _tag: "Edge", edge_id: edges.source!, run_id: runId, from_node_id: source, to_node_id: gate, label: "continue", mode: "move" },
    { _tag: "Edge", edge_id: edges.true!, run_id: runId, from_node_id: gate, to_node_id: high, label: "true", mode: "move" },
    { _tag: "Edge", edge_id: edges.false!, run_id: runId, from_node_id: gate, to_node_id: output, label: "false", mode: "move" }
  )
  const reasons = {
    true: canonicalJsonUnsafe({ condition: "row['amount'] > 1000", result: "true", destination: "high_values" }),
    false: canonicalJsonUnsafe({ condition: "row['amount'] > 1000", result: "false", destination: "continue" })
  }
  const random = prng(42)
  const base = Date.parse("2026-01-01T00:00:00.000Z")
  const perRow: Array<ReadonlyArray<AuditRecord>> = []
  for (let i = 0; i < rows; i++) {
    const at = new Date(base + Math.floor(i / 50)).toISOString()
    const amount = Math.floor(random() * 2000)
    const data = { id: i + 1, name: `customer ${i + 1}`, amount, category: CATEGORIES[i % CATEGORIES.length]! }
    const json = canonicalJsonUnsafe(data)
    const hash = sha256Hex(json)
    const rowId = newRowId()
    const tokenId = newTokenId()
    const gateState = newStateId()
    const sinkState = newStateId()
    const high = amount > 1000
    perRow.push([
      {
        _tag: "Row",
        row_id: rowId,
        run_id: runId,
        source_node_id: source,
        row_index: i,
        source_data_hash: hash,
        source_data_json: json,
        created_at: at
      },
      {
        _tag: "Token",
        token_id: tokenId,
        run_id: runId,
        row_id: rowId,
        fork_group_id: null,
        join_group_id: null,
        expand_group_id: null,
        branch_name: null,
        created_at: at
      },
      {
        _tag: "NodeState",
        state_id: gateState,
        token_id: tokenId,
        run_id: runId,
        node_id: gate,
        step_index: 1,
        attempt: 1,
        status: "completed",
        input_hash: hash,
        output_hash: hash,
        duration_ms: 0.004,
        error_json: null,
        started_at: at,
        completed_at: at
      },
      {
        _tag: "RoutingEvent",
        event_id: `evt_${gateState.slice(3)}`,
        state_id: gateState,
        edge_id: high ? edges.true! : edges.false!,
        routing_group_id: `grp_${gateState.slice(3)}`,
        ordinal: 0,
        mode: "move",
        reason_json: high ? reasons.true : reasons.false,
        created_at: at
      },
      {
        _tag: "NodeState",
        state_id: sinkState,
        token_id: tokenId,
        run_id: runId,
        node_id: high ? node("sink", "high_values") : node("sink", "output"),
        step_index: 2,
        attempt: 1,
        status: "completed",
        input_hash: hash,
        output_hash: hash,
        duration_ms: 12.5,
        error_json: null,
        started_at: at,
        completed_at: at
      },
      {
        _tag: "Outcome",
        outcome_id: newOutcomeId(),
        run_id: runId,
        token_id: tokenId,
        outcome: high ? "ROUTED" : "COMPLETED",
        is_terminal: 1,
        sink_name: high ? "high_values" : "output",
        batch_id: null,
        fork_group_id: null,
        join_group_id: null,
        expand_group_id: null,
        error_hash: null,
        context_json: high ? canonicalJsonUnsafe({ gate: "amount_threshold", label: "true" }) : null,
        recorded_at: at
      }
    ])
  }
  const tableOf = new Map<string, string>(TABLE_ORDER)
  const countsByTable = new Map<string, number>()
  for (const r of [...setup, ...perRow.flat()]) {
    const table = tableOf.get(r._tag)!
    countsByTable.set(table, (countsByTable.get(table) ?? 0) + 1)
  }
  return { runId, setup, perRow, total: setup.length + rows * 6, countsByTable }
}

const settingsOf = { bench: "recorder", rows: ROWS }

/** Rows per table in `file`, compared with what the workload holds; a line for each mismatch. */
const checkCounts = (file: string, w: Workload): Array<string> => {
  const db = openRaw(file)
  try {
    const problems: Array<string> = []
    for (const [table, expected] of w.countsByTable) {
      const { n } = db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }
      if (n !== expected) problems.push(`${table}: ${n} rows, expected ${expected}`)
    }
    return problems
  } finally {
    db.close()
  }
}

type Mode = "per-row" | "per-chunk"

interface Timing {
  readonly ms: number
  /** CPU time of this process (user + system) over the same span. */
  readonly cpuMs: number
}

const startTiming = () => {
  const wall = performance.now()
  const cpu = process.cpuUsage()
  return (): Timing => {
    const used = process.cpuUsage(cpu)
    return { ms: performance.now() - wall, cpuMs: (used.user + used.system) / 1000 }
  }
}

const recorderTrial = async (file: string, w: Workload, mode: Mode): Promise<Timing> => {
  const program = Effect.gen(function*() {
    const recorder = yield* Recorder
    yield* recorder.beginRun({ runId: w.runId, settings: settingsOf })
    const stop = startTiming()
    yield* recorder.append(w.setup)
    if (mode === "per-row") {
      for (const records of w.perRow) yield* recorder.append(records)
    } else {
      for (let i = 0; i < w.perRow.length; i += CHUNK_ROWS) {
        yield* recorder.append(w.perRow.slice(i, i + CHUNK_ROWS).flat())
      }
    }
    yield* recorder.flush
    return stop()
  })
  return Effect.runPromise(program.pipe(Effect.provide(SqliteLandscape(file))))
}

/** The compact tables the per-row records go to, with the columns this program fills. */
const COMPACT: Record<string, { readonly table: string; readonly columns: ReadonlyArray<string> }> = {
  Row: { table: "ls_rows", columns: ["row_key", "row_id", "run_key", "source_node_key", "row_index", "source_data_hash", "source_data_json", "created_at"] },
  Token: { table: "ls_tokens", columns: ["token_key", "token_id", "run_key", "row_key", "created_at"] },
  NodeState: {
    table: "ls_node_states",
    columns: ["state_key", "state_id", "token_key", "run_key", "node_key", "step_index", "attempt", "status", "input_hash", "output_hash", "duration_ms", "error_json", "started_at", "completed_at"]
  },
  RoutingEvent: { table: "ls_routing_events", columns: ["event_id", "state_key", "edge_key", "routing_group_id", "ordinal", "mode", "reason_json", "created_at"] },
  Outcome: { table: "ls_token_outcomes", columns: ["outcome_id", "run_key", "token_key", "outcome", "is_terminal", "sink_name", "context_json", "recorded_at"] }
}

const rawTrial = async (file: string, w: Workload): Promise<Timing> => {
  await migrateLandscape(file)
  const db = openRaw(file)
  try {
    db.prepare(
      `INSERT INTO runs (run_id, status, started_at, config_hash, settings_json, canonical_version)
       VALUES (?, 'running', ?, ?, ?, 'sha256-rfc8785-v1')`
    ).run(w.runId, new Date().toISOString(), sha256Hex(JSON.stringify(settingsOf)), JSON.stringify(settingsOf))
    const stop = startTiming()
    // The recorder's columns per table, for the tables the workload fills; the per-row
    // tables are written in their compact form (schema v2), as the recorder does.
    const filled = new Set<string>([...w.setup, ...w.perRow[0]!].map((r) => r._tag))
    const plain = TABLES.filter((t) => filled.has(t.tag) && !(t.tag in COMPACT))
    const inserter = new RawInserter(db, [
      ...plain.map((t) => [t.table, t.columns] as const),
      ...Object.values(COMPACT).map((c) => [c.table, c.columns] as const)
    ])
    const targets = new Map<InsertTag, { params: Array<unknown>; cols: ReadonlyArray<string> }>()
    for (const [tag, table] of TABLE_ORDER) {
      const spec = plain.find((t) => t.tag === tag)
      if (spec !== undefined) targets.set(tag, { params: inserter.target(table), cols: spec.columns })
    }
    const add = (r: AuditRecord) => {
      const t = targets.get(r._tag as InsertTag)!
      const rec = r as unknown as Record<string, unknown>
      for (const c of t.cols) t.params.push(rec[c] ?? null)
      inserter.added()
    }
    for (const r of w.setup) add(r)
    inserter.flush()
    // This program is the file's only writer: it reads the keys the Landscape gave the
    // run, nodes and edges once, and numbers rows, tokens and states itself.
    const runKey = (db.prepare("SELECT run_key FROM runs WHERE run_id = ?").get(w.runId) as { run_key: number }).run_key
    const nodeKey = new Map((db.prepare("SELECT node_id, node_key FROM nodes WHERE run_id = ?").all(w.runId) as Array<{ node_id: string; node_key: number }>).map((n) => [n.node_id, n.node_key]))
    const edgeKey = new Map((db.prepare("SELECT edge_id, edge_key FROM edges WHERE run_id = ?").all(w.runId) as Array<{ edge_id: string; edge_key: number }>).map((e) => [e.edge_id, e.edge_key]))
    const keys = { row: new Map<string, number>(), token: new Map<string, number>(), state: new Map<string, number>() }
    const target = (table: string) => inserter.target(table)
    const addCompact = (r: AuditRecord): boolean => {
      switch (r._tag) {
        case "Row": {
          const key = keys.row.size + 1
          keys.row.set(r.row_id, key)
          target("ls_rows").push(key, r.row_id, runKey, nodeKey.get(r.source_node_id), r.row_index, r.source_data_hash, r.source_data_json, r.created_at)
          break
        }
        case "Token": {
          const key = keys.token.size + 1
          keys.token.set(r.token_id, key)
          target("ls_tokens").push(key, r.token_id, runKey, keys.row.get(r.row_id), r.created_at)
          break
        }
        case "NodeState": {
          const key = keys.state.size + 1
          keys.state.set(r.state_id, key)
          target("ls_node_states").push(
            key, r.state_id, keys.token.get(r.token_id), runKey, nodeKey.get(r.node_id), r.step_index, r.attempt, r.status,
            r.input_hash, r.output_hash, r.duration_ms, r.error_json, r.started_at, r.completed_at
          )
          break
        }
        case "RoutingEvent":
          target("ls_routing_events").push(
            r.event_id, keys.state.get(r.state_id), edgeKey.get(r.edge_id), r.routing_group_id, r.ordinal, r.mode, r.reason_json, r.created_at
          )
          break
        case "Outcome":
          target("ls_token_outcomes").push(r.outcome_id, runKey, keys.token.get(r.token_id), r.outcome, r.is_terminal, r.sink_name, r.context_json, r.recorded_at)
          break
        default:
          return false
      }
      inserter.added()
      return true
    }
    for (const records of w.perRow) {
      for (const r of records) if (!addCompact(r)) add(r)
      if (inserter.records >= RAW_RECORDS_PER_TRANSACTION) inserter.flush()
    }
    inserter.flush()
    return stop()
  } finally {
    db.close()
  }
}

export const runRecorderBench = async (): Promise<void> => {
  console.log(`recorder bench: ${fmtInt(ROWS)} rows × 6 audit records (+ node/edge setup), file Landscape, best of ${TRIALS}`)
  const t0 = performance.now()
  const w = buildWorkload(ROWS)
  console.log(`  workload: ${fmtInt(w.total)} records built in ${fmtMs(performance.now() - t0)} (not timed)`)
  const dir = makeTempDir("recorder")
  const samples: Record<string, Array<Timing>> = { "recorder per-row": [], "recorder per-chunk": [], raw: [] }
  const sizes: Record<string, number> = {}
  try {
    let n = 0
    for (let trial = 0; trial < TRIALS; trial++) {
      // Interleaved, so that a slow spell of the machine hits every variant.
      for (const variant of Object.keys(samples)) {
        const file = NodePath.join(dir, `trial-${n++}.db`)
        gc()
        const timing = variant === "raw"
          ? await rawTrial(file, w)
          : await recorderTrial(file, w, variant === "recorder per-row" ? "per-row" : "per-chunk")
        samples[variant]!.push(timing)
        sizes[variant] = dbSize(file)
        for (const p of checkCounts(file, w)) console.log(`  WARNING ${variant}: ${p}`)
        removeDir(file)
        for (const suffix of ["-wal", "-shm"]) removeDir(file + suffix)
      }
    }
    const rawBest = bestOf(samples.raw!.map((t) => t.ms)).best
    const rawCpu = Math.min(...samples.raw!.map((t) => t.cpuMs))
    for (const [variant, timings] of Object.entries(samples)) {
      const { best, spread } = bestOf(timings.map((t) => t.ms))
      const cpu = Math.min(...timings.map((t) => t.cpuMs))
      const ratio = best / rawBest
      console.log(
        `  ${variant.padEnd(19)} ${fmtMs(best).padStart(8)}  ${fmtInt(w.total / (best / 1000)).padStart(10)} records/s` +
          `  CPU ${fmtMs(cpu)}` +
          (variant === "raw" ? "" : `  → ${ratio.toFixed(2)}× raw wall time, ${(cpu / rawCpu).toFixed(2)}× raw CPU`) +
          `  [runs ${timings.map((t) => fmtMs(t.ms)).join(", ")}; spread ${(spread * 100).toFixed(0)}%; db ${fmtMb(sizes[variant] ?? 0)}]`
      )
    }
    console.log(`  target: recorder within 2× of raw (${CHUNK_ROWS} rows per append in per-chunk mode)`)
  } finally {
    removeDir(dir)
  }
}
