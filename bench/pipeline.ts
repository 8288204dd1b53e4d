/**
 * Pipeline benchmark: csv source → gate `row['amount'] > 1000` → two csv sinks, with
 * the full audit trail in a file Landscape, at 100k and 1M rows; next to a baseline
 * doing the same work by hand (csv-parse, canonical JSON + SHA-256 per row, the same
 * 6 audit records per row through better-sqlite3 in batched transactions, the two
 * output CSVs written and fsynced at the same points).
 *
 * Every workload runs in a child process of its own, so its peak RSS is its own.
 * `--profile` also runs the engine once on 100k rows under `--cpu-prof` and prints
 * the hot spots.
 */
import { parse } from "csv-parse"
import canonicalize from "canonicalize"
import { stringify } from "csv-stringify/sync"
import { Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { applyHeapPolicy, heapPolicy } from "../src/cli/heap.js"
import { SqliteLandscape } from "../src/landscape/sqlite.js"
import { buildPipeline } from "../src/pipeline/build.js"
import { runPipeline } from "../src/pipeline/orchestrator/run.js"
import { parseSettings } from "../src/pipeline/settings.js"
import { TelemetryNoop } from "../src/services/telemetry.js"
import {
  bestOf,
  cliBin,
  countLines,
  dbSize,
  fmtInt,
  fmtMb,
  fmtMs,
  makeTempDir,
  migrateLandscape,
  openRaw,
  printProfileSummary,
  prng,
  RawInserter,
  removeDir,
  reportResult,
  runWorker,
  startRssSampler,
  summarizeCpuProfile
} from "./support.js"

const CATEGORIES = ["retail", "wholesale", "online", "partner", "internal"]
const FIRST = ["Alice", "Bob", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivan", "Jun"]
/**
 * The hand-written programs' durability point: sink write + fsync + audit flush every
 * 5,000 rows (the engine's default is every 2,000; the batch size moves neither within
 * the machine's noise, see docs/benchmarks.md).
 */
const DURABILITY_ROWS = 5_000

/** Writes `rows` rows of id,name,amount,category; about 45% have amount > 1000. */
export const generateCsv = (file: string, rows: number): void => {
  const random = prng(7)
  const fd = NodeFs.openSync(file, "w")
  try {
    let parts: Array<string> = ["id,name,amount,category\n"]
    for (let i = 1; i <= rows; i++) {
      const name = `${FIRST[i % FIRST.length]} ${Math.floor(random() * 100_000)}`
      // one name in 50 holds a comma, so some fields are quoted
      const cell = i % 50 === 0 ? `"${name}, Jr."` : name
      parts.push(`${i},${cell},${Math.floor(random() * 2200)},${CATEGORIES[i % CATEGORIES.length]}\n`)
      if (parts.length >= 10_000) {
        NodeFs.writeSync(fd, parts.join(""))
        parts = []
      }
    }
    NodeFs.writeSync(fd, parts.join(""))
  } finally {
    NodeFs.closeSync(fd)
  }
}

const FIELDS = ["id: int", "name: str", "amount: int", "category: str"]

/**
 * The benchmarked pipeline's settings: csv → gate → two csv sinks at `sinks` (paths as
 * written into the YAML), then any `extra` top-level lines (landscape, checkpoint).
 */
export const benchPipelineYaml = (
  csv: string,
  sinks: { readonly normal: string; readonly high: string },
  extra: ReadonlyArray<string> = []
): string => {
  const schema = JSON.stringify({ mode: "fixed", fields: FIELDS })
  return [
    "source:",
    "  plugin: csv",
    "  options:",
    `    path: ${JSON.stringify(csv)}`,
    `    schema: ${schema}`,
    "    on_validation_failure: discard",
    "gates:",
    "  - name: amount_threshold",
    `    condition: "row['amount'] > 1000"`,
    "    routes:",
    `      "true": high_values`,
    `      "false": continue`,
    "sinks:",
    "  output:",
    "    plugin: csv",
    `    options: {path: ${JSON.stringify(sinks.normal)}, schema: ${schema}}`,
    "  high_values:",
    "    plugin: csv",
    `    options: {path: ${JSON.stringify(sinks.high)}, schema: ${schema}}`,
    "default_sink: output",
    ...extra,
    ""
  ].join("\n")
}

/** The same pipeline with four transforms before the gate (explicit wiring). */
const chainPipelineYaml = (csv: string, sinks: { readonly normal: string; readonly high: string }): string => {
  const schema = JSON.stringify({ mode: "fixed", fields: FIELDS })
  const observed = `{mode: observed}`
  return [
    "source:",
    "  plugin: csv",
    "  on_success: raw",
    "  options:",
    `    path: ${JSON.stringify(csv)}`,
    `    schema: ${schema}`,
    "    on_validation_failure: discard",
    "transforms:",
    "  - {name: t1, plugin: truncate, input: raw, on_success: c1, options: {schema: " + observed + ", fields: {name: 12}}}",
    "  - {name: t2, plugin: passthrough, input: c1, on_success: c2, options: {schema: " + observed + "}}",
    "  - {name: t3, plugin: keyword_filter, input: c2, on_success: c3, on_error: discard, options: {schema: " + observed + ", fields: [name], blocked_patterns: [zzz]}}",
    "  - {name: t4, plugin: field_mapper, input: c3, on_success: c4, options: {schema: " + observed + ", mapping: {}}}",
    "gates:",
    "  - name: amount_threshold",
    "    input: c4",
    `    condition: "row['amount'] > 1000"`,
    "    routes:",
    `      "true": high_values`,
    `      "false": output`,
    "sinks:",
    "  output:",
    "    plugin: csv",
    `    options: {path: ${JSON.stringify(sinks.normal)}, schema: ${schema}}`,
    "  high_values:",
    "    plugin: csv",
    `    options: {path: ${JSON.stringify(sinks.high)}, schema: ${schema}}`,
    ""
  ].join("\n")
}

const settingsYaml = (csv: string, out: string, chain = false): string => {
  const sinks = { normal: NodePath.join(out, "normal.csv"), high: NodePath.join(out, "high_values.csv") }
  return chain ? chainPipelineYaml(csv, sinks) : benchPipelineYaml(csv, sinks)
}

export interface WorkerResult {
  readonly workload: "engine" | "cli" | "baseline" | "lean"
  readonly rows: number
  readonly succeeded: number
  readonly routed: number
  readonly elapsedMs: number
  /** CPU time of the worker (user + system) over the run: less sensitive to a busy machine than wall time. */
  readonly cpuMs: number
  readonly maxRss: number
  readonly sampledPeakRss: number
  readonly peakHeapUsed: number
  readonly dbBytes: number
}

const cpuSince = (start: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(start)
  return (used.user + used.system) / 1000
}

/** `BENCH_DURABILITY_ROWS=n` runs the engine with another durability batch (for experiments). */
const durabilityOverride = (): { durabilityRows?: number } => {
  const n = Number(process.env.BENCH_DURABILITY_ROWS ?? "")
  return Number.isInteger(n) && n > 0 ? { durabilityRows: n } : {}
}

/** A worker's measurement from its start marks to now. */
const measurement = (
  workload: WorkerResult["workload"],
  counts: { readonly rows: number; readonly succeeded: number; readonly routed: number },
  marks: { readonly started: number; readonly cpu: NodeJS.CpuUsage; readonly sampler: ReturnType<typeof startRssSampler> },
  dbFile: string
): WorkerResult => {
  const elapsedMs = performance.now() - marks.started
  const cpuMs = cpuSince(marks.cpu)
  const mem = marks.sampler.stop()
  return {
    workload,
    ...counts,
    elapsedMs,
    cpuMs,
    maxRss: mem.maxRss,
    sampledPeakRss: mem.sampledPeakRss,
    peakHeapUsed: mem.peakHeapUsed,
    dbBytes: dbSize(dbFile)
  }
}

/** The two output CSVs and the routing texts both hand-written programs record. */
const handWrittenOutputs = (out: string) => ({
  outputs: {
    output: openOutput(NodePath.join(out, "normal.csv")),
    high_values: openOutput(NodePath.join(out, "high_values.csv"))
  },
  reasons: {
    true: JSON.stringify({ condition: "row['amount'] > 1000", destination: "high_values", result: "true" }),
    false: JSON.stringify({ condition: "row['amount'] > 1000", destination: "continue", result: "false" })
  },
  routedContext: JSON.stringify({ gate: "amount_threshold", label: "true" })
})

// ---------------------------------------------------------------------------
// The engine, in-process: settings → plan → runPipeline with a file Landscape

const runEngine = async (csv: string, out: string, chain = false): Promise<WorkerResult> => {
  const db = NodePath.join(out, "landscape.db")
  const settingsFile = NodePath.join(out, "settings.yaml")
  const text = settingsYaml(csv, out, chain)
  NodeFs.writeFileSync(settingsFile, text)
  const sampler = startRssSampler()
  const started = performance.now()
  const cpu = process.cpuUsage()
  const program = parseSettings(settingsFile, text, {}).pipe(
    Effect.flatMap((loaded) => buildPipeline(loaded)),
    Effect.flatMap((plan) => runPipeline(plan, durabilityOverride())),
    Effect.provide(Layer.merge(SqliteLandscape(db), TelemetryNoop))
  )
  const result = await Effect.runPromise(program)
  return measurement(
    "engine",
    { rows: result.rows_processed, succeeded: result.rows_succeeded, routed: result.rows_routed },
    { started, cpu, sampler },
    db
  )
}

// ---------------------------------------------------------------------------
// The CLI, as users run it: `node dist/bin.js run -s settings.yaml`, the whole process

const usageReporter = (): string => new URL("./usage-reporter.js", import.meta.url).href

const runCliWorkload = async (csv: string, out: string, chain = false): Promise<WorkerResult> => {
  const db = NodePath.join(out, "landscape.db")
  const settingsFile = NodePath.join(out, "settings.yaml")
  NodeFs.writeFileSync(settingsFile, settingsYaml(csv, out, chain))
  const usageFile = NodePath.join(out, "usage.json")
  const started = performance.now()
  const child = spawnSync(process.execPath, ["--import", usageReporter(), cliBin(), "run", "-s", settingsFile, "--db", db, "-q", "--json"], {
    env: { ...process.env, BENCH_USAGE_FILE: usageFile },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 * 1024 * 1024
  })
  const elapsedMs = performance.now() - started
  if (child.status !== 0) throw new Error(`runledger run exited ${child.status ?? child.signal}`)
  const result = JSON.parse(child.stdout) as { rows_processed: number; rows_succeeded: number; rows_routed: number }
  const usage = JSON.parse(NodeFs.readFileSync(usageFile, "utf8")) as { maxRss: number; cpuMs: number; peakHeapUsed: number }
  return {
    workload: "cli",
    rows: result.rows_processed,
    succeeded: result.rows_succeeded,
    routed: result.rows_routed,
    elapsedMs,
    cpuMs: usage.cpuMs,
    maxRss: usage.maxRss,
    sampledPeakRss: usage.maxRss,
    peakHeapUsed: usage.peakHeapUsed,
    dbBytes: dbSize(db)
  }
}

// ---------------------------------------------------------------------------
// The baseline: the same work written by hand

/** The Landscape's compact per-row tables (schema v2), which the engine writes. */
const COLS = {
  ls_rows: ["row_key", "row_id", "run_key", "source_node_key", "row_index", "source_data_hash", "source_data_json", "created_at"],
  ls_tokens: ["token_key", "token_id", "run_key", "row_key", "created_at"],
  ls_node_states: [
    "state_key",
    "state_id",
    "token_key",
    "run_key",
    "node_key",
    "step_index",
    "attempt",
    "status",
    "input_hash",
    "output_hash",
    "duration_ms",
    "started_at",
    "completed_at"
  ],
  ls_routing_events: ["event_id", "state_key", "edge_key", "routing_group_id", "ordinal", "mode", "reason_json", "created_at"],
  ls_token_outcomes: ["outcome_id", "run_key", "token_key", "outcome", "is_terminal", "sink_name", "context_json", "recorded_at"]
} as const

/** An output CSV: text appended per batch, fsynced at durability points, hashed as written. */
const openOutput = (file: string) => {
  const fd = NodeFs.openSync(file, "w")
  const hash = createHash("sha256")
  let pending: Array<Array<unknown>> = []
  const write = (text: string) => {
    const buf = Buffer.from(text, "utf8")
    NodeFs.writeSync(fd, buf)
    hash.update(buf)
  }
  write("id,name,amount,category\r\n")
  return {
    add: (row: Array<unknown>) => pending.push(row),
    sync: () => {
      if (pending.length > 0) write(stringify(pending, { record_delimiter: "\r\n" }))
      pending = []
      NodeFs.fsyncSync(fd)
    },
    close: () => {
      NodeFs.closeSync(fd)
      return hash.digest("hex")
    }
  }
}

/**
 * Ids that sort by creation, as the engine's UUIDv7-shaped ones do: random ids (v4)
 * would make every primary-key insert land at a random B-tree page, several times slower.
 */
const orderedIds = () => {
  const stamp = Date.now().toString(16).padStart(12, "0")
  let seq = 0
  return (prefix: string): string => `${prefix}_${stamp}${(seq++).toString(16).padStart(12, "0")}`
}

/**
 * The 4-transform chain by hand, as the engine's plugins do it: truncate `name` to 12
 * code points, pass through, screen `name` for a blocked pattern (none match), map the
 * fields onto themselves. `record(step, input hash, output hash)` notes each node state;
 * the output is hashed only when a step made a new row with new content.
 */
const CHAIN_BLOCKED = /zzz/
const chainByHand = (
  row: { id: number; name: string; amount: number; category: string },
  hash: string,
  record: (step: number, inputHash: string, outputHash: string) => void
) => {
  const cps = Array.from(row.name)
  let current = row
  let currentHash = hash
  if (cps.length > 12) {
    current = { ...row, name: cps.slice(0, 12).join("") }
    currentHash = createHash("sha256").update(canonicalize(current)!).digest("hex")
  }
  record(1, hash, currentHash)
  record(2, currentHash, currentHash)
  if (CHAIN_BLOCKED.test(current.name)) throw new Error("the bench's input holds a blocked name")
  record(3, currentHash, currentHash)
  record(4, currentHash, currentHash)
  return { row: current, hash: currentHash }
}

const runBaseline = async (csv: string, out: string, chain = false): Promise<WorkerResult> => {
  const dbFile = NodePath.join(out, "landscape.db")
  const sampler = startRssSampler()
  const started = performance.now()
  const cpu = process.cpuUsage()
  await migrateLandscape(dbFile)
  const db = openRaw(dbFile)
  const newId = orderedIds()
  const runId = newId("run")
  const now = () => new Date().toISOString()
  db.prepare(
    `INSERT INTO runs (run_id, status, started_at, config_hash, settings_json, canonical_version) VALUES (?, 'running', ?, ?, ?, ?)`
  ).run(runId, now(), "0".repeat(64), "{}", "sha256-rfc8785-v1")
  // The Landscape gives runs, nodes and edges their integer keys; read them back once.
  const runKey = (db.prepare(`SELECT run_key FROM runs WHERE run_id = ?`).get(runId) as { run_key: number }).run_key
  const insertNode = db.prepare(
    `INSERT INTO nodes (run_id, node_id, plugin_name, node_type, name, config_hash, config_json, sequence) VALUES (?, ?, ?, ?, ?, ?, '{}', ?)`
  )
  const nodeKeyOf = db.prepare(`SELECT node_key FROM nodes WHERE run_id = ? AND node_id = ?`)
  const node = (nodeId: string, plugin: string, type: string, name: string, sequence: number): number => {
    insertNode.run(runId, nodeId, plugin, type, name, "0", sequence)
    return (nodeKeyOf.get(runId, nodeId) as { node_key: number }).node_key
  }
  const sourceNode = node("source_source_000000000000", "csv", "source", "source", 0)
  const gateNode = node("gate_amount_threshold_000000000000", "gate", "gate", "amount_threshold", 1)
  const sinkNode = {
    output: node("sink_output_000000000000", "csv", "sink", "output", 2),
    high_values: node("sink_high_values_000000000000", "csv", "sink", "high_values", 3)
  }
  const chainNodes = chain
    ? ["truncate", "passthrough", "keyword_filter", "field_mapper"].map((plugin, i) => node(`transform_t${i + 1}_000000000000`, plugin, "transform", `t${i + 1}`, 4 + i))
    : []
  const insertEdge = db.prepare(`INSERT INTO edges (edge_id, run_id, from_node_id, to_node_id, label, mode) VALUES (?, ?, ?, ?, ?, 'move')`)
  const edgeKeyOf = db.prepare(`SELECT edge_key FROM edges WHERE edge_id = ?`)
  const edge = (to: string, label: string): number => {
    const edgeId = newId("edg")
    insertEdge.run(edgeId, runId, "gate_amount_threshold_000000000000", to, label)
    return (edgeKeyOf.get(edgeId) as { edge_key: number }).edge_key
  }
  const edgeKey = { true: edge("sink_high_values_000000000000", "true"), false: edge("sink_output_000000000000", "false") }

  const inserter = new RawInserter(db, Object.entries(COLS))
  const rows = inserter.target("ls_rows")
  const tokens = inserter.target("ls_tokens")
  const states = inserter.target("ls_node_states")
  const events = inserter.target("ls_routing_events")
  const outcomes = inserter.target("ls_token_outcomes")
  const { outputs, reasons, routedContext } = handWrittenOutputs(out)
  /** This program is the file's only writer: it numbers the rows, tokens and states itself. */
  let rowKey = 0
  let tokenKey = 0
  let stateKey = 0
  /** Sink states and outcomes are recorded once the sink write is durable, as the engine does. */
  let held: Array<unknown> = []

  const durabilityPoint = () => {
    outputs.output.sync()
    outputs.high_values.sync()
    const at = now()
    for (let i = 0; i < held.length; i += 5) {
      const [token, hash, sink, queuedAt, high] = held.slice(i, i + 5) as [number, string, "output" | "high_values", string, boolean]
      states.push(++stateKey, newId("st"), token, runKey, sinkNode[sink], 2, 1, "completed", hash, hash, 1, queuedAt, at)
      outcomes.push(newId("out"), runKey, token, high ? "ROUTED" : "COMPLETED", 1, sink, high ? routedContext : null, at)
      inserter.added(2)
    }
    held = []
    inserter.flush()
  }

  let index = 0
  let succeeded = 0
  let routed = 0
  const parser = NodeFs.createReadStream(csv).pipe(parse({ columns: true }))
  for await (const rec of parser as AsyncIterable<Record<string, string>>) {
    const id = Number(rec.id)
    const amount = Number(rec.amount)
    if (!Number.isInteger(id) || !Number.isInteger(amount)) continue
    const source = { id, name: rec.name!, amount, category: rec.category! }
    const json = canonicalize(source)!
    const sourceHash = createHash("sha256").update(json).digest("hex")
    const at = now()
    const row = ++rowKey
    const token = ++tokenKey
    rows.push(row, newId("row"), runKey, sourceNode, index++, sourceHash, json, at)
    tokens.push(token, newId("tok"), runKey, row, at)
    const { row: data, hash } = chain
      ? chainByHand(source, sourceHash, (step, inputHash, outputHash) => {
        states.push(++stateKey, newId("st"), token, runKey, chainNodes[step - 1], step, 1, "completed", inputHash, outputHash, 0, at, at)
        inserter.added(1)
      })
      : { row: source, hash: sourceHash }
    const gateState = ++stateKey
    const gateStateId = newId("st")
    const high = amount > 1000
    states.push(gateState, gateStateId, token, runKey, gateNode, 1, 1, "completed", hash, hash, 0, at, at)
    events.push(`evt_${gateStateId}`, gateState, high ? edgeKey.true : edgeKey.false, `grp_${gateStateId}`, 0, "move", high ? reasons.true : reasons.false, at)
    inserter.added(4)
    const sink = high ? "high_values" : "output"
    outputs[sink].add([id, data.name, amount, data.category])
    held.push(token, hash, sink, at, high)
    if (high) routed++
    else succeeded++
    if (held.length >= DURABILITY_ROWS * 5) durabilityPoint()
  }
  durabilityPoint()
  outputs.output.close()
  outputs.high_values.close()
  db.prepare(`UPDATE runs SET status = 'completed', completed_at = ? WHERE run_id = ?`).run(now(), runId)
  db.close()
  return measurement("baseline", { rows: index, succeeded, routed }, { started, cpu, sampler }, dbFile)
}

// ---------------------------------------------------------------------------
// The lean baseline: the same facts in a minimal schema of its own

/**
 * A schema written for this job alone: integer keys (SQLite's rowid), the run named once,
 * no foreign-key text ids, and only the three lookups a row's lineage needs (a row's
 * tokens, a token's states, a token's outcome). It records the same facts per row as
 * the engine: the row (its canonical JSON and SHA-256), its token, the gate's state and
 * routing decision, the sink's state and the terminal outcome.
 */
const LEAN_SCHEMA = [
  `CREATE TABLE runs (run_key INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, started_at TEXT NOT NULL, completed_at TEXT)`,
  `CREATE TABLE nodes (node_key INTEGER PRIMARY KEY, run_key INTEGER NOT NULL REFERENCES runs, name TEXT NOT NULL, kind TEXT NOT NULL, plugin TEXT NOT NULL)`,
  `CREATE TABLE edges (edge_key INTEGER PRIMARY KEY, run_key INTEGER NOT NULL REFERENCES runs, from_node INTEGER NOT NULL, to_node INTEGER NOT NULL, label TEXT NOT NULL)`,
  `CREATE TABLE rows (row_key INTEGER PRIMARY KEY, run_key INTEGER NOT NULL, row_index INTEGER NOT NULL, data_hash TEXT NOT NULL, data_json TEXT NOT NULL, created_at TEXT NOT NULL)`,
  `CREATE TABLE tokens (token_key INTEGER PRIMARY KEY, row_key INTEGER NOT NULL, created_at TEXT NOT NULL)`,
  `CREATE INDEX tokens_row ON tokens (row_key)`,
  `CREATE TABLE node_states (state_key INTEGER PRIMARY KEY, token_key INTEGER NOT NULL, node_key INTEGER NOT NULL, step_index INTEGER NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL, input_hash TEXT NOT NULL, output_hash TEXT, duration_ms REAL, started_at TEXT NOT NULL, completed_at TEXT)`,
  `CREATE INDEX node_states_token ON node_states (token_key)`,
  `CREATE TABLE routing_events (event_key INTEGER PRIMARY KEY, state_key INTEGER NOT NULL, edge_key INTEGER NOT NULL, mode TEXT NOT NULL, reason_json TEXT NOT NULL, created_at TEXT NOT NULL)`,
  `CREATE TABLE token_outcomes (outcome_key INTEGER PRIMARY KEY, token_key INTEGER NOT NULL, outcome TEXT NOT NULL, sink_node INTEGER, context_json TEXT, recorded_at TEXT NOT NULL)`,
  `CREATE UNIQUE INDEX token_outcomes_token ON token_outcomes (token_key)`
]

const LEAN_COLS = {
  rows: ["row_key", "run_key", "row_index", "data_hash", "data_json", "created_at"],
  tokens: ["token_key", "row_key", "created_at"],
  node_states: ["state_key", "token_key", "node_key", "step_index", "attempt", "status", "input_hash", "output_hash", "duration_ms", "started_at", "completed_at"],
  routing_events: ["event_key", "state_key", "edge_key", "mode", "reason_json", "created_at"],
  token_outcomes: ["outcome_key", "token_key", "outcome", "sink_node", "context_json", "recorded_at"]
} as const

const runLeanBaseline = async (csv: string, out: string, chain = false): Promise<WorkerResult> => {
  const dbFile = NodePath.join(out, "landscape.db")
  const sampler = startRssSampler()
  const started = performance.now()
  const cpu = process.cpuUsage()
  const db = openRaw(dbFile)
  for (const ddl of LEAN_SCHEMA) db.exec(ddl)
  const now = () => new Date().toISOString()
  const runKey = Number(db.prepare(`INSERT INTO runs (run_id, status, started_at) VALUES (?, 'running', ?)`).run(`run_${Date.now()}`, now()).lastInsertRowid)
  const node = db.prepare(`INSERT INTO nodes (run_key, name, kind, plugin) VALUES (?, ?, ?, ?)`)
  const nodeKey = (name: string, kind: string, plugin: string) => Number(node.run(runKey, name, kind, plugin).lastInsertRowid)
  nodeKey("source", "source", "csv")
  const gateNode = nodeKey("amount_threshold", "gate", "gate")
  const chainNodes = chain ? ["truncate", "passthrough", "keyword_filter", "field_mapper"].map((plugin, i) => nodeKey(`t${i + 1}`, "transform", plugin)) : []
  const sinkNode = { output: nodeKey("output", "sink", "csv"), high_values: nodeKey("high_values", "sink", "csv") }
  const edge = db.prepare(`INSERT INTO edges (run_key, from_node, to_node, label) VALUES (?, ?, ?, ?)`)
  const edgeKey = { true: Number(edge.run(runKey, gateNode, sinkNode.high_values, "true").lastInsertRowid), false: Number(edge.run(runKey, gateNode, sinkNode.output, "false").lastInsertRowid) }
  const inserter = new RawInserter(db, Object.entries(LEAN_COLS))
  const rows = inserter.target("rows")
  const tokens = inserter.target("tokens")
  const states = inserter.target("node_states")
  const events = inserter.target("routing_events")
  const outcomes = inserter.target("token_outcomes")
  const { outputs, reasons, routedContext } = handWrittenOutputs(out)
  let key = 0
  let held: Array<unknown> = []
  const durabilityPoint = () => {
    outputs.output.sync()
    outputs.high_values.sync()
    const at = now()
    for (let i = 0; i < held.length; i += 5) {
      const tokenKey = held[i] as number
      const hash = held[i + 1] as string
      const sink = held[i + 2] as "output" | "high_values"
      const queuedAt = held[i + 3] as string
      const high = held[i + 4] as boolean
      states.push(++key, tokenKey, sinkNode[sink], 2, 1, "completed", hash, hash, 1, queuedAt, at)
      outcomes.push(++key, tokenKey, high ? "ROUTED" : "COMPLETED", sinkNode[sink], high ? routedContext : null, at)
      inserter.added(2)
    }
    held = []
    inserter.flush()
  }
  let index = 0
  let succeeded = 0
  let routed = 0
  const parser = NodeFs.createReadStream(csv).pipe(parse({ columns: true }))
  for await (const rec of parser as AsyncIterable<Record<string, string>>) {
    const id = Number(rec.id)
    const amount = Number(rec.amount)
    if (!Number.isInteger(id) || !Number.isInteger(amount)) continue
    const source = { id, name: rec.name!, amount, category: rec.category! }
    const json = canonicalize(source)!
    const sourceHash = createHash("sha256").update(json).digest("hex")
    const at = now()
    const rowKey = ++key
    const tokenKey = ++key
    rows.push(rowKey, runKey, index++, sourceHash, json, at)
    tokens.push(tokenKey, rowKey, at)
    const { row, hash } = chain
      ? chainByHand(source, sourceHash, (step, inputHash, outputHash) => {
        states.push(++key, tokenKey, chainNodes[step - 1], step, 1, "completed", inputHash, outputHash, 0, at, at)
        inserter.added(1)
      })
      : { row: source, hash: sourceHash }
    const gateState = ++key
    const high = amount > 1000
    states.push(gateState, tokenKey, gateNode, 1, 1, "completed", hash, hash, 0, at, at)
    events.push(++key, gateState, high ? edgeKey.true : edgeKey.false, "move", high ? reasons.true : reasons.false, at)
    inserter.added(4)
    const sink = high ? "high_values" : "output"
    outputs[sink].add([id, row.name, amount, row.category])
    held.push(tokenKey, hash, sink, at, high)
    if (high) routed++
    else succeeded++
    if (held.length >= DURABILITY_ROWS * 5) durabilityPoint()
  }
  durabilityPoint()
  outputs.output.close()
  outputs.high_values.close()
  db.prepare(`UPDATE runs SET status = 'completed', completed_at = ? WHERE run_key = ?`).run(now(), runKey)
  db.close()
  return measurement("lean", { rows: index, succeeded, routed }, { started, cpu, sampler }, dbFile)
}

/** `pipeline-worker <engine|cli|baseline|lean> <csv> <out dir> [chain]`: runs one workload and reports it. */
export const runPipelineWorker = async (args: ReadonlyArray<string>): Promise<void> => {
  const [workload, csv, out, shape] = args
  if ((workload !== "engine" && workload !== "cli" && workload !== "baseline" && workload !== "lean") || csv === undefined || out === undefined) {
    throw new Error("usage: pipeline-worker <engine|cli|baseline|lean> <csv> <out dir>")
  }
  NodeFs.mkdirSync(out, { recursive: true })
  // Every workload runs with the heap setting of the runledger CLI (cli/heap.ts), so that
  // the engine is measured as `runledger run` runs it and the programs alike.
  const heapWarning = applyHeapPolicy()
  if (heapWarning !== undefined) console.error(`warning: ${heapWarning}`)
  const run = workload === "engine" ? runEngine : workload === "cli" ? runCliWorkload : workload === "lean" ? runLeanBaseline : runBaseline
  reportResult(await run(csv, out, shape === "chain"))
}

// ---------------------------------------------------------------------------
// The bench

const outputRows = (out: string): number =>
  ["normal.csv", "high_values.csv"].reduce((n, f) => n + countLines(NodePath.join(out, f)) - 1, 0)

/** SHA-256 of a workload's two output files: every workload must write the same bytes. */
const outputDigest = (out: string): string => {
  const h = createHash("sha256")
  for (const f of ["normal.csv", "high_values.csv"]) h.update(NodeFs.readFileSync(NodePath.join(out, f)))
  return h.digest("hex")
}

type Workload = "engine" | "cli" | "baseline" | "lean"
const WORKLOADS: ReadonlyArray<Workload> = ["lean", "baseline", "engine", "cli"]
const LABEL: Record<Workload, string> = { lean: "raw", baseline: "raw-ls", engine: "runledger", cli: "CLI" }

interface CaseFigures {
  readonly rows: number
  readonly shape: "plain" | "chain"
  readonly best: Record<Workload, number>
  readonly maxRss: Record<Workload, number>
  readonly bytesPerRow: Record<Workload, number>
}

/**
 * One case: the three workloads alternate, `trials` times, each in a child process of
 * its own; the best wall time of each is compared (the machine's noise only ever adds).
 */
const runCase = async (dir: string, csv: string, rows: number, trials: number, shape: "plain" | "chain"): Promise<CaseFigures> => {
  const results: Record<Workload, Array<WorkerResult>> = { engine: [], cli: [], baseline: [], lean: [] }
  let n = 0
  let firstDigest: { readonly workload: Workload; readonly digest: string } | undefined
  for (let t = 0; t < trials; t++) {
    for (const workload of WORKLOADS) {
      const out = NodePath.join(dir, `${workload}-${rows}-${n++}`)
      const r = await runWorker<WorkerResult>(["pipeline-worker", workload, csv, out, shape])
      const written = outputRows(out)
      if (r.rows !== rows || written !== rows) {
        console.log(`  WARNING ${workload}: ${r.rows} rows read, ${written} rows written, expected ${rows}`)
      }
      const digest = outputDigest(out)
      if (firstDigest === undefined) firstDigest = { workload, digest }
      else if (digest !== firstDigest.digest) {
        console.log(`  WARNING ${workload}: its output files differ from ${firstDigest.workload}'s`)
      }
      results[workload].push(r)
      removeDir(out)
    }
  }
  const figures = (workload: Workload) => {
    const rs = results[workload]
    const { best, spread } = bestOf(rs.map((r) => r.elapsedMs))
    const bestRun = rs.find((r) => r.elapsedMs === best)!
    const cpu = Math.min(...rs.map((r) => r.cpuMs))
    const maxRss = Math.max(...rs.map((r) => r.maxRss))
    const bytesPerRow = bestRun.dbBytes / rows
    return {
      best,
      maxRss,
      bytesPerRow,
      text: `  ${LABEL[workload].padEnd(9)} ${fmtMs(best).padStart(8)}  ${fmtInt(rows / (best / 1000)).padStart(7)} rows/s` +
        `  CPU ${fmtMs(cpu)}` +
        `  peak RSS ${fmtMb(maxRss)} (heap ${fmtMb(Math.max(...rs.map((r) => r.peakHeapUsed)))})` +
        `  db ${fmtMb(bestRun.dbBytes)} (${fmtInt(bytesPerRow)} B/row)` +
        (rs.length > 1 ? `  [runs ${rs.map((r) => fmtMs(r.elapsedMs)).join(", ")}; spread ${(spread * 100).toFixed(0)}%]` : "")
    }
  }
  const f = { lean: figures("lean"), baseline: figures("baseline"), engine: figures("engine"), cli: figures("cli") }
  const title = shape === "chain" ? "4-transform chain → gate → two sinks" : "csv → gate → two sinks"
  console.log(`${fmtInt(rows)} rows, ${title}, best of ${trials}:`)
  for (const w of WORKLOADS) console.log(f[w].text)
  const target = shape === "chain" ? 0.4 : 0.6
  const ratio = f.lean.best / f.engine.best
  console.log(
    `  runledger / raw = ${ratio.toFixed(2)}× rows/s (target ≥ ${target}×: ${ratio >= target ? "met" : "NOT met"}); ` +
      `runledger / raw-ls = ${(f.baseline.best / f.engine.best).toFixed(2)}×; ` +
      `peak RSS ${fmtMb(f.engine.maxRss)} / ${fmtMb(f.lean.maxRss)}`
  )
  console.log(
    `  CLI (whole process, start-up included) / raw = ${(f.lean.best / f.cli.best).toFixed(2)}× rows/s; ` +
      `CLI peak RSS ${fmtMb(f.cli.maxRss)}`
  )
  const of = (pick: (x: (typeof f)[Workload]) => number) =>
    ({ lean: pick(f.lean), baseline: pick(f.baseline), engine: pick(f.engine), cli: pick(f.cli) })
  return {
    rows,
    shape,
    best: of((x) => x.best),
    maxRss: of((x) => x.maxRss),
    bytesPerRow: of((x) => x.bytesPerRow)
  }
}

const profileEngine = async (dir: string, csv: string): Promise<void> => {
  const profDir = NodePath.join(dir, "profile")
  const out = NodePath.join(dir, "profile-run")
  console.log("profile: engine, 100k rows, node --cpu-prof")
  const r = await runWorker<WorkerResult>(["pipeline-worker", "engine", csv, out], ["--cpu-prof", "--cpu-prof-dir", profDir])
  console.log(`  run under the profiler: ${fmtMs(r.elapsedMs)}`)
  const file = NodeFs.readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"))
  if (file === undefined) {
    console.log("  no .cpuprofile was written")
    return
  }
  printProfileSummary(summarizeCpuProfile(NodePath.join(profDir, file)))
  const keep = process.env.BENCH_KEEP_PROFILE
  if (keep !== undefined && keep !== "") {
    NodeFs.copyFileSync(NodePath.join(profDir, file), keep)
    console.log(`  profile kept as ${keep} (open it in Chrome DevTools → Performance)`)
  }
}

export const runPipelineBench = async (args: ReadonlyArray<string> = []): Promise<void> => {
  const profile = args.includes("--profile")
  const only1m = args.includes("--1m-only")
  const option = (name: string, fallback: number): number => {
    const arg = args.find((a) => a.startsWith(`--${name}=`))
    const n = arg === undefined ? fallback : Number(arg.slice(name.length + 3))
    return Number.isInteger(n) && n > 0 ? n : fallback
  }
  const trials = { 100_000: option("trials", 2), 1_000_000: option("trials-1m", 1) } as Record<number, number>
  const dir = makeTempDir("pipeline")
  try {
    const sizes = only1m ? [1_000_000] : [100_000, 1_000_000]
    const csvs = new Map<number, string>()
    for (const rows of [...sizes, ...(profile && only1m ? [100_000] : [])]) {
      const csv = NodePath.join(dir, `input-${rows}.csv`)
      const t0 = performance.now()
      generateCsv(csv, rows)
      csvs.set(rows, csv)
      console.log(`input: ${fmtInt(rows)} rows, ${fmtMb(NodeFs.statSync(csv).size)} generated in ${fmtMs(performance.now() - t0)}`)
    }
    console.log("each workload runs in its own child process; figures are wall time of the whole run")
    console.log("raw = a hand-written program with a minimal schema of its own (integer keys, 3 lookup indexes);")
    console.log("raw-ls = the same program writing the Landscape's own schema; runledger = the engine, in the worker's process;")
    console.log("CLI = `runledger run` (dist/bin.js) in a process of its own, timed from spawn to exit")
    const percent = heapPolicy(process.env, []).percent
    console.log(`every workload with the runledger CLI's heap setting: ${percent === undefined ? "V8's own" : `--heap-growing-percent=${percent}`} (src/cli/heap.ts)\n`)
    const cases: Array<CaseFigures> = []
    for (const rows of sizes) {
      cases.push(await runCase(dir, csvs.get(rows)!, rows, trials[rows]!, "plain"))
      if (rows === 100_000 && !args.includes("--no-chain")) {
        cases.push(await runCase(dir, csvs.get(rows)!, rows, trials[rows]!, "chain"))
      }
    }
    const plain = cases.filter((c) => c.shape === "plain")
    if (plain.length === 2) {
      const [small, large] = plain as [CaseFigures, CaseFigures]
      console.log(
        `\npeak RSS, runledger: ${fmtMb(small.maxRss.engine)} at ${fmtInt(small.rows)} rows, ${fmtMb(large.maxRss.engine)} at ${fmtInt(large.rows)} ` +
          `(${(large.maxRss.engine / small.maxRss.engine).toFixed(2)}× for ${fmtInt(large.rows / small.rows)}× the rows; target ≤ 200 MB and flat)`
      )
      const cap = 200 * 2 ** 20
      console.log(
        `peak RSS, CLI:       ${fmtMb(small.maxRss.cli)} at ${fmtInt(small.rows)} rows, ${fmtMb(large.maxRss.cli)} at ${fmtInt(large.rows)} ` +
          `(${(large.maxRss.cli / small.maxRss.cli).toFixed(2)}×; ${Math.max(small.maxRss.cli, large.maxRss.cli) <= cap ? "≤ 200 MB: met" : "over 200 MB: NOT met"})`
      )
    }
    if (profile) {
      console.log("")
      await profileEngine(dir, csvs.get(100_000)!)
    }
  } finally {
    removeDir(dir)
  }
}
