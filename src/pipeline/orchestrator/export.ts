/**
 * Export of a run's audit trail: as part of a pipeline run (`landscape.export`), and
 * for any finished run (`exportRun`, the `export` command). What the export reads and
 * records goes through the ExportStore port; the formats are in export-json.ts and
 * export-csv.ts, the export sink in export-sink.ts.
 *
 * In a run, export starts only after the pipeline's scope has closed and the run is
 * finalized. It builds a fresh instance of the export sink's plugin and opens it in a
 * scope of its own (on_start first; flush → on_complete → close when the scope
 * closes); it never touches an instance the pipeline used. The run stays `completed`
 * whatever happens to the export; the outcome is recorded in the run's export columns.
 */
import { Clock, Effect, Either, Exit, Stream } from "effect"
import * as NodePath from "node:path"
import type { RunId } from "../../core/ids.js"
import {
  type Manifest,
  missingKey,
  requireSigningKey,
  SIGNING_KEY_ENV,
  SIGNING_KEY_FALLBACK_ENV,
  SigningKeyMissing,
  signingKeyFromEnv,
  signRecords
} from "../../services/signing.js"
import { ExportError, type ExportRecord, type ExportRecordsOptions, ExportStore, type RunKind } from "../../services/export-store.js"
import type { RecorderError } from "../../services/recorder.js"
import { Telemetry } from "../../services/telemetry.js"
import type { PipelinePlan } from "../build.js"
import type { ArtifactInfo } from "../plugins/protocol.js"
import { writeCsvExport } from "./export-csv.js"
import { csvExportDir, type WrittenFile } from "./export-file.js"
import { writeJsonExport } from "./export-json.js"
import { writeThroughSink } from "./export-sink.js"
import type { PipelineRunStatus, RunResult } from "./types.js"

export type ExportFormat = "json" | "csv"

/** Artifact type of export outputs in the `artifacts` table. */
export const EXPORT_ARTIFACT_TYPE = "audit_export"

type Env = Readonly<Record<string, string | undefined>>

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

/** The run's records from the store; signed (and closed by the manifest) when a key is given. */
const recordsFor = (
  runId: RunId,
  key: string | undefined,
  options: ExportRecordsOptions = {}
): Stream.Stream<ExportRecord | Manifest, ExportError, ExportStore> =>
  Stream.unwrap(Effect.map(ExportStore, (store) => {
    const records = store.records(runId, options)
    return key === undefined ? records : signRecords(records, key, runId)
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
  /** Loop runs: inline each command's whole log file; pipeline runs have none. */
  readonly includeLogs?: boolean
  /** Pipeline runs: inline each call's request and reply body from the payload store. */
  readonly includePayloads?: boolean
  readonly payloadDir?: string
}

export interface ExportSummary {
  readonly run_id: RunId
  /** `pipeline` (a run of `runs`) or `loop` (a run of `loop_runs`). */
  readonly run_kind: RunKind
  readonly run_status: string
  readonly format: ExportFormat
  readonly out: string
  readonly record_count: number
  readonly signed: boolean
  readonly files: ReadonlyArray<WrittenFile>
}

/**
 * Exports one run of the Landscape to a JSON file or a CSV directory. Read-only on
 * the Landscape: the run's export columns describe the export its settings asked for.
 */
export const exportRun = (options: ExportRunOptions) =>
  Effect.gen(function*() {
    const store = yield* ExportStore
    const key = options.sign === true
      ? options.signingKey ?? (yield* requireSigningKey("--sign"))
      : undefined
    const run = yield* store.findRun(options.run)
    const runId = run.runId
    const out = NodePath.resolve(options.out)
    const records = recordsFor(runId, key, {
      ...(options.includeLogs === true ? { includeLogs: true } : {}),
      ...(options.includePayloads === true ? { includePayloads: true } : {}),
      ...(options.payloadDir === undefined ? {} : { payloadDir: options.payloadDir })
    })
    const signed = key !== undefined
    const head = { run_id: runId, run_kind: run.kind, run_status: run.status, format: options.format, out, signed }
    if (options.format === "json") {
      const { count, file } = yield* writeJsonExport(out, records, out.toLowerCase().endsWith(".jsonl"))
      return { ...head, record_count: count, files: [file] } satisfies ExportSummary
    }
    const { count, files } = yield* writeCsvExport(out, records, signed, run.kind)
    return { ...head, record_count: count, files } satisfies ExportSummary
  }).pipe(Effect.withSpan("exportRun"))

// ---------------------------------------------------------------------------
// Export as part of a run


/**
 * The export a run's settings ask for, after the run is finalized. Records the
 * artifacts; the caller records the export status.
 */
export const runExport = (plan: PipelinePlan, runId: RunId, signingKey: string | undefined) =>
  Effect.gen(function*() {
    const store = yield* ExportStore
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
      store.recordArtifact({
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
) => Effect.Effect<RunResult["export_status"], never, Telemetry>

export interface ExportAfterRunOptions {
  readonly env?: Env
  /** Told the error of a failed export (the CLI prints it on stderr). */
  readonly onFailure?: (message: string) => Effect.Effect<void>
}

/**
 * The `afterRun` hook of `runPipeline` for the plan's `landscape.export`: undefined
 * when export is off. Captures the ExportStore of the Landscape the run writes to.
 * export_status goes `pending` when the export starts, then `completed` or `failed`
 * (with export_error); a failed export never changes the run's own status.
 */
export const exportAfterRun = (
  plan: PipelinePlan,
  options: ExportAfterRunOptions = {}
): Effect.Effect<AfterRun | undefined, never, ExportStore> =>
  Effect.gen(function*() {
    const settings = plan.settings.landscape?.export
    if (settings?.enabled !== true) return undefined
    const store = yield* ExportStore
    const format: ExportFormat = settings.format ?? "json"
    const sink = settings.sink ?? null
    const onFailure = options.onFailure ?? (() => Effect.void)
    const afterRun: AfterRun = (runId) =>
      Effect.gen(function*() {
        const telemetry = yield* Telemetry
        const started = yield* Clock.currentTimeMillis
        const fail = (message: string) =>
          Effect.gen(function*() {
            yield* store.setExportStatus(runId, { export_status: "failed", export_error: message }).pipe(
              Effect.catchAll((e: RecorderError) => onFailure(`recording the failed export: ${e.message}`))
            )
            yield* onFailure(message)
            return "failed" as const
          })
        const pending = yield* Effect.either(
          store.setExportStatus(runId, { export_status: "pending", export_error: null, export_format: format, export_sink: sink })
        )
        if (Either.isLeft(pending)) {
          yield* onFailure(pending.left.message)
          return "failed" as const
        }
        const key = settings.sign === true ? signingKeyFromEnv(options.env ?? process.env) : undefined
        const exit = yield* Effect.exit(runExport(plan, runId, key).pipe(Effect.provideService(ExportStore, store)))
        if (Exit.isSuccess(exit)) {
          const at = new Date(yield* Clock.currentTimeMillis).toISOString()
          const done = yield* Effect.either(store.setExportStatus(runId, { export_status: "completed", export_error: null, exported_at: at }))
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
          store.setExportStatus(runId, { export_status: "failed", export_error: "export interrupted" }).pipe(Effect.ignore)
        ),
        Effect.tap((status) => Effect.annotateCurrentSpan("runledger.export_status", status ?? "none")),
        Effect.withSpan("runledger.export", {
          attributes: { "runledger.run_id": runId, "runledger.format": format, "runledger.signed": settings.sign === true }
        })
      )
    return afterRun
  })
