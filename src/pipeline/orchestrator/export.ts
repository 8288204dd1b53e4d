/**
 * Export of a run's audit trail: as part of a pipeline run (`landscape.export`), and
 * for any finished run (`exportRun`, the `export` command).
 *
 * In a run, export starts only after the pipeline's scope has closed and the run is
 * finalized. It builds a fresh instance of the export sink's plugin and opens it in a
 * scope of its own (on_start first; flush → on_complete → close when the scope
 * closes); it never touches an instance the pipeline used. The run stays `completed`
 * whatever happens to the export; the outcome is recorded in the run's export columns.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { stringify } from "csv-stringify/sync"
import { Chunk, Clock, Effect, Either, Exit, Stream } from "effect"
import { createHash, type Hash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { StringDecoder } from "node:string_decoder"
import type { RunId } from "../../core/ids.js"
import {
  ExportError,
  type ExportRecord,
  exportRecords,
  RECORD_TYPES,
  recordExportArtifact,
  type RecordType,
  tableColumns
} from "../../landscape/exporter.js"
import {
  type Manifest,
  missingKey,
  requireSigningKey,
  SIGNING_KEY_ENV,
  SIGNING_KEY_FALLBACK_ENV,
  SigningKeyMissing,
  signingKeyFromEnv,
  signRecords
} from "../../landscape/signing.js"
import { Recorder, type RecorderError } from "../../services/recorder.js"
import { Telemetry } from "../../services/telemetry.js"
import type { PipelinePlan, SinkStep } from "../build.js"
import type { ArtifactInfo, Row } from "../plugins/protocol.js"
import type { PipelineRunStatus, RunResult } from "./types.js"

export type ExportFormat = "json" | "csv"

/** Records handed to the export sink per `write`. */
const SINK_BATCH = 1_000
/** Artifact type of export outputs in the `artifacts` table. */
export const EXPORT_ARTIFACT_TYPE = "audit_export"

type Env = Readonly<Record<string, string | undefined>>

const messageOf = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e)

// ---------------------------------------------------------------------------
// Fail fast

/**
 * The signing-key check done before a run reads any row or opens any sink: with
 * `landscape.export.enabled` and `landscape.export.sign`, a key must be set.
 */
export const checkExportSigningKey = (plan: Pick<PipelinePlan, "file" | "settings">, env: Env = process.env): SigningKeyMissing | undefined => {
  const exp = plan.settings.landscape?.export
  if (exp?.enabled !== true || exp.sign !== true) return undefined
  if (signingKeyFromEnv(env) !== undefined) return undefined
  return new SigningKeyMissing({
    requestedBy: "landscape.export.sign",
    message: `${plan.file}: landscape.export.sign: signing is on but no signing key is set; ` +
      `set ${SIGNING_KEY_ENV} (or ${SIGNING_KEY_FALLBACK_ENV}) before running`
  })
}

// ---------------------------------------------------------------------------
// Output files

export interface WrittenFile {
  readonly path: string
  readonly contentHash: string
  readonly sizeBytes: number
}

const writeError = (path: string, what: string, cause: unknown) =>
  new ExportError({ reason: "Write", message: `${what} ${path}: ${messageOf(cause)}`, cause })

/**
 * A file written through a buffer into `<path>.partial`, hashed as it grows, and
 * renamed into place only when complete, so a failed export leaves no half file.
 */
class OutFile {
  private fd: number
  private readonly hash: Hash = createHash("sha256")
  private size = 0
  private parts: Array<string> = []
  private pending = 0
  private readonly tmp: string

  constructor(readonly path: string) {
    this.tmp = `${path}.partial`
    NodeFs.mkdirSync(NodePath.dirname(path), { recursive: true })
    this.fd = NodeFs.openSync(this.tmp, "w")
  }

  write(text: string): void {
    this.parts.push(text)
    this.pending += text.length
    if (this.pending >= 1 << 20) this.drain()
  }

  private drain(): void {
    if (this.parts.length === 0) return
    const buf = Buffer.from(this.parts.join(""), "utf8")
    this.parts = []
    this.pending = 0
    let offset = 0
    while (offset < buf.length) offset += NodeFs.writeSync(this.fd, buf, offset, buf.length - offset)
    this.hash.update(buf)
    this.size += buf.length
  }

  finish(): WrittenFile {
    this.drain()
    NodeFs.fsyncSync(this.fd)
    NodeFs.closeSync(this.fd)
    this.fd = -1
    NodeFs.renameSync(this.tmp, this.path)
    return { path: this.path, contentHash: this.hash.digest("hex"), sizeBytes: this.size }
  }

  abort(): void {
    if (this.fd >= 0) {
      try {
        NodeFs.closeSync(this.fd)
      } catch {
        // already closed
      }
      this.fd = -1
    }
    NodeFs.rmSync(this.tmp, { force: true })
  }
}

/** An OutFile as a scoped resource: removed unless `finish` ran. */
const outFile = (path: string) =>
  Effect.acquireRelease(
    Effect.try({ try: () => new OutFile(path), catch: (e) => writeError(path, "cannot create", e) }),
    (file) => Effect.sync(() => file.abort())
  )

const finishFile = (file: OutFile) => Effect.try({ try: () => file.finish(), catch: (e) => writeError(file.path, "cannot finish", e) })

type AnyRecord = ExportRecord | Manifest

/**
 * A JSON array with one record per line (or JSON Lines when `jsonl`): plain
 * `JSON.stringify` text; signatures cover the values, not this text.
 */
export const writeJsonExport = <E, R>(
  path: string,
  records: Stream.Stream<AnyRecord, E, R>,
  jsonl: boolean
): Effect.Effect<{ readonly file: WrittenFile; readonly count: number }, E | ExportError, R> =>
  Effect.scoped(Effect.gen(function*() {
    const file = yield* outFile(path)
    let count = 0
    let written = 0
    yield* Stream.runForEachChunk(records, (chunk) =>
      Effect.try({
        try: () => {
          for (const record of chunk) {
            const text = JSON.stringify(record)
            file.write(jsonl ? `${text}\n` : `${written === 0 ? "[\n" : ",\n"}${text}`)
            written++
            if (record.record_type !== "manifest") count++
          }
        },
        catch: (e) => writeError(path, "cannot write", e)
      }))
    if (!jsonl) file.write(written === 0 ? "[]\n" : "\n]\n")
    return { file: yield* finishFile(file), count }
  }))

// ---------------------------------------------------------------------------
// CSV

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v)

const cellOf = (v: unknown): string | null => {
  if (v === null || v === undefined) return null
  if (typeof v === "string") return v
  if (typeof v === "number" || typeof v === "boolean") return String(v)
  return JSON.stringify(v)
}

/** Columns of one CSV file: base columns in order, each followed by its dotted sub-columns. */
class CsvColumns {
  private readonly children = new Map<string, Array<string>>()
  private readonly known = new Set<string>()
  constructor(private readonly base: Array<string>) {
    for (const b of base) this.known.add(b)
  }

  add(base: string, key: string): void {
    if (this.known.has(key)) return
    this.known.add(key)
    if (!this.children.has(base) && !this.base.includes(base)) this.base.push(base)
    const list = this.children.get(base)
    if (list === undefined) this.children.set(base, [key])
    else list.push(key)
  }

  header(): Array<string> {
    const out: Array<string> = []
    for (const b of this.base) {
      out.push(b)
      for (const c of this.children.get(b) ?? []) out.push(c)
    }
    return out
  }
}

/**
 * Flattens a record: an object value becomes dotted columns (`source_data_json.id`),
 * recursively; arrays and empty objects stay as JSON text in one cell. Two paths that
 * flatten to the same column are an error, never an overwrite.
 */
export const flattenRecord = (
  record: Readonly<Record<string, unknown>>,
  onColumn: (base: string, key: string) => void = () => undefined
): Record<string, string | null> => {
  const out: Record<string, string | null> = Object.create(null)
  const set = (base: string, key: string, value: unknown) => {
    if (Object.prototype.hasOwnProperty.call(out, key)) {
      throw new ExportError({
        reason: "Write",
        message: `cannot flatten ${String(record.record_type)} record seq ${String(record.seq)} to CSV: two values map to the column '${key}'`
      })
    }
    out[key] = cellOf(value)
    onColumn(base, key)
  }
  const walk = (base: string, prefix: string, value: Record<string, unknown>) => {
    for (const k of Object.keys(value)) {
      const v = value[k]
      const key = `${prefix}.${k}`
      if (isPlainObject(v) && Object.keys(v).length > 0) walk(base, key, v)
      else set(base, key, v)
    }
  }
  for (const k of Object.keys(record)) {
    const v = record[k]
    if (isPlainObject(v) && Object.keys(v).length > 0) {
      onColumn(k, k)
      walk(k, k, v)
    } else set(k, k, v)
  }
  return out
}

/** Reads a file of `\n`-separated lines in chunks. */
const forEachLine = (path: string, onLine: (line: string) => void): void => {
  const fd = NodeFs.openSync(path, "r")
  try {
    const buf = Buffer.alloc(1 << 20)
    const decoder = new StringDecoder("utf8")
    let rest = ""
    for (;;) {
      const n = NodeFs.readSync(fd, buf, 0, buf.length, null)
      if (n === 0) break
      const text = rest + decoder.write(buf.subarray(0, n))
      let start = 0
      for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", start)) {
        onLine(text.slice(start, i))
        start = i + 1
      }
      rest = text.slice(start)
    }
    rest += decoder.end()
    if (rest !== "") onLine(rest)
  } finally {
    NodeFs.closeSync(fd)
  }
}

/**
 * One CSV file per record type in `dir` (`run.csv`, `node.csv`, …, and `manifest.csv`
 * when signed). Every record type gets a file, with at least its header. Flattened
 * rows are spooled to disk while the columns are discovered, so memory stays flat.
 */
export const writeCsvExport = <E, R>(
  dir: string,
  records: Stream.Stream<AnyRecord, E, R>,
  signed: boolean
): Effect.Effect<{ readonly files: ReadonlyArray<WrittenFile>; readonly count: number }, E | ExportError, R | SqlClient.SqlClient> =>
  Effect.scoped(Effect.gen(function*() {
    const columnsByType = yield* tableColumns
    const tail = signed ? ["signature"] : []
    const types: Array<string> = [...RECORD_TYPES, ...(signed ? ["manifest"] : [])]
    const columns = new Map<string, CsvColumns>()
    const spools = new Map<string, OutFile>()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const spool of spools.values()) NodeFs.rmSync(spool.path, { force: true })
      })
    )
    for (const type of types) {
      const base = type === "manifest"
        ? ["record_type", "run_id", "record_count", "chain_hash", "hash_algorithm", "signature_algorithm", "canonical_version", "exported_at", "signature"]
        : ["record_type", "seq", ...columnsByType.get(type as RecordType)!, ...tail]
      columns.set(type, new CsvColumns(base))
      spools.set(type, yield* outFile(NodePath.join(dir, `.${type}.spool`)))
    }
    let count = 0
    yield* Stream.runForEachChunk(records, (chunk) =>
      Effect.try({
        try: () => {
          for (const record of chunk) {
            const type = record.record_type
            const cols = columns.get(type)
            if (cols === undefined) throw new ExportError({ reason: "Write", message: `unknown record type ${type}` })
            const flat = flattenRecord(record as Record<string, unknown>, (base, key) => cols.add(base, key))
            spools.get(type)!.write(JSON.stringify(flat) + "\n")
            if (type !== "manifest") count++
          }
        },
        catch: (e) => e instanceof ExportError ? e : writeError(dir, "cannot spool the CSV rows of", e)
      }))
    const files: Array<WrittenFile> = []
    for (const type of types) {
      const spool = yield* finishFile(spools.get(type)!)
      const header = columns.get(type)!.header()
      const csv = yield* outFile(NodePath.join(dir, `${type}.csv`))
      yield* Effect.try({
        try: () => {
          csv.write(stringify([header]))
          let batch: Array<Array<string | null>> = []
          const drain = () => {
            if (batch.length > 0) csv.write(stringify(batch))
            batch = []
          }
          forEachLine(spool.path, (line) => {
            if (line === "") return
            const flat = JSON.parse(line) as Record<string, string | null>
            batch.push(header.map((h) => Object.prototype.hasOwnProperty.call(flat, h) ? flat[h]! : null))
            if (batch.length >= 1_000) drain()
          })
          drain()
        },
        catch: (e) => writeError(csv.path, "cannot write", e)
      })
      files.push(yield* finishFile(csv))
    }
    return { files, count }
  }))

// ---------------------------------------------------------------------------
// exportRun: any finished run, outside a pipeline

export interface ExportRunOptions {
  /** A run id or `latest`. */
  readonly run: string
  readonly format: ExportFormat
  /** JSON: the file (JSON Lines when it ends in `.jsonl`); CSV: the directory. */
  readonly out: string
  readonly sign?: boolean
  /** The signing key; by default read from the environment. */
  readonly signingKey?: string
}

export interface ExportSummary {
  readonly run_id: RunId
  readonly run_status: string
  readonly format: ExportFormat
  readonly out: string
  readonly record_count: number
  readonly signed: boolean
  readonly files: ReadonlyArray<WrittenFile>
}

/** Signs when a key is given; numbers records either way. */
const recordsFor = (runId: RunId, key: string | undefined): Stream.Stream<AnyRecord, ExportError, SqlClient.SqlClient> =>
  key === undefined ? exportRecords(runId) : signRecords(exportRecords(runId), key, runId)

/**
 * Exports one run of the Landscape to a JSON file or a CSV directory. Read-only on
 * the Landscape: the run's export columns describe the export its settings asked for.
 */
export const exportRun = (options: ExportRunOptions) =>
  Effect.gen(function*() {
    const recorder = yield* Recorder
    const key = options.sign === true
      ? options.signingKey ?? (yield* requireSigningKey("--sign"))
      : undefined
    const runId = yield* recorder.resolveRunId(options.run)
    const run = yield* recorder.getRun(runId)
    const out = NodePath.resolve(options.out)
    const records = recordsFor(runId, key)
    const signed = key !== undefined
    if (options.format === "json") {
      const { count, file } = yield* writeJsonExport(out, records, out.toLowerCase().endsWith(".jsonl"))
      return { run_id: runId, run_status: run.status, format: options.format, out, record_count: count, signed, files: [file] } satisfies ExportSummary
    }
    const { count, files } = yield* writeCsvExport(out, records, signed)
    return { run_id: runId, run_status: run.status, format: options.format, out, record_count: count, signed, files } satisfies ExportSummary
  }).pipe(Effect.withSpan("exportRun"))

// ---------------------------------------------------------------------------
// Export as part of a run

/** The directory of a CSV export: the export sink's path without its extension. */
export const csvExportDir = (sinkPath: string): string => {
  const abs = NodePath.resolve(sinkPath)
  const ext = NodePath.extname(abs)
  return ext === "" ? abs : abs.slice(0, -ext.length)
}

/**
 * Streams `records` into a fresh instance of `step`, opened in its own scope:
 * on_start when acquired; flush → on_complete → close when the scope closes (on
 * success, failure and interruption alike). Returns the sink's artifact.
 */
export const writeThroughSink = <E, R>(
  step: SinkStep,
  records: Stream.Stream<AnyRecord, E, R>
): Effect.Effect<ArtifactInfo | undefined, E | ExportError, R> =>
  Effect.gen(function*() {
    const problems: Array<string> = []
    let artifact: ArtifactInfo | undefined
    const sinkError = (what: string) => (e: unknown) =>
      new ExportError({ reason: "Sink", message: `export sink '${step.name}' ${what}: ${messageOf(e)}`, cause: e })
    const note = (what: string) => (e: unknown) => Effect.sync(() => void problems.push(sinkError(what)(e).message))

    const use = Effect.gen(function*() {
      const instance = yield* Effect.acquireRelease(
        Effect.gen(function*() {
          const created = yield* step.create().pipe(Effect.mapError(sinkError("cannot be created")))
          yield* created.onStart.pipe(
            Effect.mapError(sinkError("on_start")),
            Effect.tapError(() => created.close)
          )
          return created
        }),
        (opened) =>
          Effect.gen(function*() {
            yield* opened.flush.pipe(Effect.catchAll(note("flush")))
            yield* opened.onComplete.pipe(Effect.catchAll(note("on_complete")))
            yield* opened.close
            artifact = yield* opened.artifact.pipe(Effect.catchAll((e) => Effect.as(note("artifact")(e), undefined)))
          })
      )
      yield* records.pipe(
        Stream.rechunk(SINK_BATCH),
        Stream.runForEachChunk((chunk) =>
          instance.write(Chunk.toReadonlyArray(chunk) as unknown as ReadonlyArray<Row>).pipe(Effect.mapError(sinkError("write")))
        )
      )
    })
    yield* Effect.scoped(use)
    if (problems.length > 0) return yield* Effect.fail(new ExportError({ reason: "Sink", message: problems.join("; ") }))
    return artifact
  })

/**
 * The export a run's settings ask for, after the run is finalized. Records the
 * artifacts; the caller records the export status.
 */
export const runExport = (plan: PipelinePlan, runId: RunId, signingKey: string | undefined) =>
  Effect.gen(function*() {
    const settings = plan.settings.landscape?.export
    const sinkName = settings?.sink
    const step = sinkName === undefined ? undefined : plan.sinks.get(sinkName)
    if (step === undefined) {
      return yield* Effect.fail(new ExportError({ reason: "Settings", message: `landscape.export.sink names no sink of the pipeline` }))
    }
    const format: ExportFormat = settings?.format ?? "json"
    if (settings?.sign === true && signingKey === undefined) return yield* Effect.fail(missingKey("landscape.export.sign"))
    const records = recordsFor(runId, signingKey)
    const register = (file: WrittenFile | ArtifactInfo) =>
      recordExportArtifact({
        runId,
        sinkNodeId: step.nodeId,
        sinkName: step.name,
        artifactType: EXPORT_ARTIFACT_TYPE,
        pathOrUri: "path" in file ? file.path : file.pathOrUri,
        contentHash: file.contentHash,
        sizeBytes: file.sizeBytes
      })
    if (format === "json") {
      const artifact = yield* writeThroughSink(step, records)
      if (artifact !== undefined) yield* register(artifact)
      return
    }
    const path = (step.options as { readonly path?: unknown } | undefined)?.path
    if (typeof path !== "string" || path === "") {
      return yield* Effect.fail(
        new ExportError({
          reason: "Settings",
          message: `landscape.export.format csv writes next to the export sink's path, but sink '${step.name}' has no path option`
        })
      )
    }
    const { files } = yield* writeCsvExport(csvExportDir(path), records, signingKey !== undefined)
    for (const f of files) yield* register(f)
  })

export type AfterRun = (
  runId: RunId,
  status: PipelineRunStatus
) => Effect.Effect<RunResult["export_status"], never, Recorder | Telemetry>

export interface ExportAfterRunOptions {
  readonly env?: Env
  /** Told the error of a failed export (the CLI prints it on stderr). */
  readonly onFailure?: (message: string) => Effect.Effect<void>
}

/**
 * The `afterRun` hook of `runPipeline` for the plan's `landscape.export`: undefined
 * when export is off. Captures the SqlClient of the Landscape the run writes to.
 * export_status goes `pending` when the export starts, then `completed` or `failed`
 * (with export_error); a failed export never changes the run's own status.
 */
export const exportAfterRun = (
  plan: PipelinePlan,
  options: ExportAfterRunOptions = {}
): Effect.Effect<AfterRun | undefined, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const settings = plan.settings.landscape?.export
    if (settings?.enabled !== true) return undefined
    const sql = yield* SqlClient.SqlClient
    const format: ExportFormat = settings.format ?? "json"
    const sink = settings.sink ?? null
    const onFailure = options.onFailure ?? (() => Effect.void)
    const afterRun: AfterRun = (runId) =>
      Effect.gen(function*() {
        const recorder = yield* Recorder
        const telemetry = yield* Telemetry
        const started = yield* Clock.currentTimeMillis
        const fail = (message: string) =>
          Effect.gen(function*() {
            yield* recorder.setExportStatus(runId, { export_status: "failed", export_error: message }).pipe(
              Effect.catchAll((e: RecorderError) => onFailure(`recording the failed export: ${e.message}`))
            )
            yield* onFailure(message)
            return "failed" as const
          })
        const pending = yield* Effect.either(
          recorder.setExportStatus(runId, { export_status: "pending", export_error: null, export_format: format, export_sink: sink })
        )
        if (Either.isLeft(pending)) {
          yield* onFailure(pending.left.message)
          return "failed" as const
        }
        const key = settings.sign === true ? signingKeyFromEnv(options.env ?? process.env) : undefined
        const exit = yield* Effect.exit(runExport(plan, runId, key).pipe(Effect.provideService(SqlClient.SqlClient, sql)))
        if (Exit.isSuccess(exit)) {
          const at = yield* recorder.now
          const done = yield* Effect.either(recorder.setExportStatus(runId, { export_status: "completed", export_error: null, exported_at: at }))
          if (Either.isLeft(done)) {
            yield* onFailure(done.left.message)
            return "failed" as const
          }
          yield* telemetry.emit({ _tag: "PhaseDone", runId, phase: "export", durationMs: (yield* Clock.currentTimeMillis) - started })
          return "completed" as const
        }
        const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        return yield* fail(failure === undefined ? `export failed: ${String(exit.cause)}` : failure.message)
      }).pipe(
        Effect.onInterrupt(() =>
          Effect.flatMap(Recorder, (recorder) =>
            recorder.setExportStatus(runId, { export_status: "failed", export_error: "export interrupted" }).pipe(Effect.ignore)
          )
        )
      )
    return afterRun
  })
