/**
 * Plugin protocols: what a source, a transform (row or batch-aware) and a sink are.
 *
 * Rows are plain JSON-like objects. Build them with `Object.fromEntries`, spread or
 * `setField` — never `row[key] = value`, which treats a `__proto__` key as the prototype.
 */
import type { Effect, Scope, Stream } from "effect"
import { Data } from "effect"
import type { ErrorClass, ExternalAttempt, ExternalRequest } from "./external/client.js"

export type Row = { readonly [key: string]: unknown }

/**
 * Adds `key` to a row being built (the hot path): plain assignment, except for the
 * one key plain assignment would treat as the prototype.
 */
export const putField = (row: Record<string, unknown>, key: string, value: unknown): void => {
  if (key === "__proto__") setField(row, key, value)
  else row[key] = value
}

/** Sets `key` as an own data property (safe for `__proto__`), keeping its position if present. */
export const setField = (row: Record<string, unknown>, key: string, value: unknown): void => {
  Object.defineProperty(row, key, { value, writable: true, enumerable: true, configurable: true })
}

// ---------------------------------------------------------------------------
// Schemas (the `schema:` option of every data plugin)

export type FieldType = "str" | "int" | "float" | "bool" | "any"

export interface FieldSpec {
  readonly name: string
  readonly type: FieldType
  readonly optional: boolean
}

export interface SchemaConfig {
  readonly mode: "observed" | "fixed" | "flexible"
  readonly fields: ReadonlyArray<FieldSpec>
  readonly guaranteedFields: ReadonlyArray<string>
  readonly requiredFields: ReadonlyArray<string>
  readonly auditFields: ReadonlyArray<string>
}

// ---------------------------------------------------------------------------
// Errors

/**
 * A plugin's options are invalid. `key` is the path below the plugin's `options`
 * (e.g. `schema.fields[2]`); the settings loader prefixes the entry's own path.
 */
export class PluginConfigError extends Data.TaggedError("PluginConfigError")<{
  readonly plugin: string
  readonly key: string
  readonly value?: unknown
  readonly message: string
}> {}

/**
 * A failure that stops the run ("crash" in ELSPETH's terms): a missing input file, an
 * unusable row for a batch plugin, a sink that cannot write. Names what and why.
 */
export class PluginRunError extends Data.TaggedError("PluginRunError")<{
  readonly plugin: string
  readonly message: string
  readonly cause?: unknown
}> {}

// ---------------------------------------------------------------------------
// Sources

/**
 * Where a source item's record ends in its file: the place a later read can restart
 * from to yield the items after it (see `SourceInstance.readFrom`).
 */
export interface SourcePosition {
  /**
   * Byte offset in the file, as stored (before any transcoding), just after the item's
   * record and its line terminator: where reading the next item starts.
   */
  readonly bytes: number
  /**
   * Physical lines consumed up to there (lines skipped by `skip_rows`, blank lines and
   * lines inside quoted fields included): the next line read is line `line + 1`.
   */
  readonly line: number
}

/**
 * One item read by a source: a validated row or an invalid one to quarantine. File
 * sources that can restart mid-file (CSV, JSON Lines) set `position` on every item.
 */
export type SourceItem =
  | { readonly _tag: "Valid"; readonly row: Row; readonly position?: SourcePosition }
  | {
    readonly _tag: "Invalid"
    /** The raw, uncoerced payload (may be a non-object for JSON sources). */
    readonly raw: unknown
    /** Human-readable reason, e.g. `amount: expected int, got 'abc'`. */
    readonly error: string
    /** Per-field details where known. */
    readonly fieldErrors?: ReadonlyArray<{ readonly field: string; readonly message: string }>
    readonly position?: SourcePosition
  }

/** Where `SourceInstance.readFrom` continues: after `items` items, the last at `position`. */
export interface SourceRestart {
  /** Items a read yielded before this point (at least 1; 0 means `read` itself). */
  readonly items: number
  /** The `position` of the last of those items. */
  readonly position: SourcePosition
}

export interface SourceInstance {
  readonly plugin: string
  /** `discard` or a sink name. */
  readonly onValidationFailure: string
  readonly schema: SchemaConfig
  /**
   * Streams items in file order; memory stays flat in the size of the input. Items are
   * emitted as soon as they are read: a source never holds parsed items back while it
   * waits for more input (a pipe that delivers rows slowly).
   */
  readonly read: Stream.Stream<SourceItem, PluginRunError>
  /**
   * Continues a read after its first `at.items` items, reading the file from
   * `at.position.bytes` (the header, if any, is taken from the start of the file). It
   * yields exactly the items `read` yields after those — payloads, errors, line and row
   * numbers and positions alike — provided the file is unchanged. With `items: 0` it is
   * `read`. Undefined for a source that cannot restart mid-file (a JSON array file).
   */
  readonly readFrom?: (at: SourceRestart) => Stream.Stream<SourceItem, PluginRunError>
  /** Original header names by final field name (CSV), for `restore_source_headers`. */
  readonly sourceHeaders?: () => ReadonlyMap<string, string> | undefined
}

// ---------------------------------------------------------------------------
// Transforms

export type TransformResult =
  | { readonly _tag: "Success"; readonly row: Row }
  /** Deaggregation: one input, several outputs (json_explode). The parent is EXPANDED. */
  | { readonly _tag: "Expand"; readonly rows: ReadonlyArray<Row> }
  | {
    readonly _tag: "Error"
    /** Structured reason, recorded in `transform_errors`, e.g. `{reason: "missing_field", field}`. */
    readonly reason: Row
    /** Retryable errors are retried per the `retry` settings before routing. */
    readonly retryable: boolean
  }

export const TransformResult = {
  success: (row: Row): TransformResult => ({ _tag: "Success", row }),
  expand: (rows: ReadonlyArray<Row>): TransformResult => ({ _tag: "Expand", rows }),
  error: (reason: Row, retryable = false): TransformResult => ({ _tag: "Error", reason, retryable })
}

export interface RowTransformInstance {
  readonly _tag: "RowTransform"
  readonly plugin: string
  /** `discard`, a sink name, or undefined (an error result then fails the run). */
  readonly onError: string | undefined
  readonly inputSchema: SchemaConfig
  readonly outputSchema: SchemaConfig
  /** Pure and synchronous; a thrown error or a PluginRunError is a run failure. */
  readonly process: (row: Row) => TransformResult
  /**
   * Set by transforms whose result comes from an external call (`llm`, `http`): the
   * engine makes and records the call and never calls `process`.
   */
  readonly external?: ExternalCallSpec
}

export type BatchResult =
  | {
    readonly _tag: "Success"
    readonly rows: ReadonlyArray<Row>
    /**
     * Deaggregation: for each output, the index of the input it was derived from.
     * When given (transform mode), each input is EXPANDED into its own outputs
     * instead of being consumed into outputs of the whole batch.
     */
    readonly origins?: ReadonlyArray<number>
    /**
     * Inputs the plugin could not use, by index, each with a structured reason
     * (`{reason: "invalid_copies", field, value}`). The rest of the batch goes on:
     * each such input ends QUARANTINED (its error in `transform_errors`) and has no
     * outputs — `rows` and `origins` cover only the other inputs (`origins` still
     * counts indices over the whole batch; in passthrough mode `rows` holds one row
     * per remaining input, in order).
     */
    readonly rowErrors?: ReadonlyArray<BatchRowError>
  }
  | { readonly _tag: "Error"; readonly reason: Row }

/** One input of a batch that a batch plugin refused (see `BatchResult.rowErrors`). */
export interface BatchRowError {
  /** The input's index in the batch. */
  readonly index: number
  readonly reason: Row
}

export interface BatchTransformInstance {
  readonly _tag: "BatchTransform"
  readonly plugin: string
  readonly onError: string | undefined
  readonly inputSchema: SchemaConfig
  readonly outputSchema: SchemaConfig
  /** Consumes a whole batch; throws PluginRunError for rows it cannot use. */
  readonly processBatch: (rows: ReadonlyArray<Row>) => BatchResult
}

export type TransformInstance = RowTransformInstance | BatchTransformInstance

// ---------------------------------------------------------------------------
// External calls: what an external-call transform (`llm`, `http`) gives the engine —
// how to build the request for a row and how to read the reply into a result. The
// engine makes the call (live, replayed or verified), records every attempt in `calls`
// with the bodies in the payload store, and applies the result like any row transform's.

/**
 * The part of a request that is recorded and hashed: never the headers (they carry
 * keys), and of the URL only its path and query — the host is in the node's recorded
 * configuration, and a replay against another address (or none) matches the same calls.
 */
export interface RecordedRequest {
  readonly method: ExternalRequest["method"]
  /** Path and query, e.g. `/v1/chat/completions`. */
  readonly url: string
  readonly body: unknown
}

export type PreparedCall =
  | { readonly _tag: "Call"; readonly request: ExternalRequest; readonly recorded: RecordedRequest }
  /** The row cannot be asked about (a missing field, a template error): an error result, no call. */
  | { readonly _tag: "Error"; readonly reason: Row }

/** How a reply was read. */
export interface Interpretation {
  readonly result: TransformResult
  /** The model the reply says answered (`model` of an OpenAI-style reply). */
  readonly responseModel?: string | null
  /** Token usage the reply reported. */
  readonly usage?: unknown
}

export interface ExternalCallSpec {
  readonly kind: "llm" | "http"
  /** `openai`, `openrouter`, `azure`, `http`: recorded with each call. */
  readonly provider: string
  readonly model: string | null
  /** Rate-limit bucket name (`rate_limit.services.<name>`). */
  readonly service: string
  readonly timeoutMs: number
  /** `pool_size` of the plugin; undefined: `concurrency.max_workers`, else 1. */
  readonly poolSize: number | undefined
  /** AIMD throttle on 429s. */
  readonly adaptive: boolean
  /** Statuses that count as errors even when 2xx/3xx (http). */
  readonly errorStatuses?: ReadonlyArray<number>
  readonly retryableClasses?: ReadonlyArray<ErrorClass>
  readonly prepare: (row: Row) => PreparedCall
  /** Reads the last attempt of a call (an error attempt included) into a result. */
  readonly interpret: (row: Row, final: ExternalAttempt) => Interpretation
}


// ---------------------------------------------------------------------------
// Sinks

export interface ArtifactInfo {
  readonly pathOrUri: string
  /** SHA-256 hex of the bytes written (the file's content after close). */
  readonly contentHash: string
  readonly sizeBytes: number
}

/**
 * What of a sink's output is durable: taken after each successful `flush`, so a
 * checkpoint can store it and a later run can cut the output back to it.
 */
export interface SinkCommitted {
  /** Rows this sink instance made durable. */
  readonly rows: number
  /**
   * File sinks: the file's length in bytes at that point, bytes that were there before
   * the run (append mode) included, and the closing of a JSON array excluded — it is the
   * prefix every later state of the file starts with. Database sink: the length of the
   * committed rows as JSON Lines (the artifact's size).
   */
  readonly bytes: number
  /** Database sink: rows the table holds at that point, rows that were there before the run included. */
  readonly tableRows?: number
}

/**
 * How the engine asks a sink to write a batch. `divert: true` when the sink has
 * `on_write_failure`: a row the sink cannot write — one that does not fit its schema or
 * its columns, a value its encoding or its table cannot hold, a table constraint it
 * breaks — is left out of the output and reported in the result, and the other rows
 * are written. Without it such a row fails the whole write, as does any failure of the
 * output itself (a full disk, an I/O error) in either case.
 */
export interface SinkWriteOptions {
  readonly divert?: boolean
}

/** A row a sink left out of a write (`SinkWriteOptions.divert`). */
export interface RowDiversion {
  /** Index of the row in the batch given to `write`. */
  readonly index: number
  /** Why the sink cannot write it, in words (no sink name, path or row: the engine adds those). */
  readonly reason: string
}

/** What a write reports; a sink that left no row out may return nothing. */
export interface SinkWriteResult {
  /** The rows left out, in batch order, each index at most once. */
  readonly diverted: ReadonlyArray<RowDiversion>
}

/**
 * A sink instance and its lifecycle: `onStart → write… → flush → onComplete → close`.
 * The engine owns the order (see `openSink`); an instance is used once and never again
 * after `close`. `flush` makes every written row durable (fsync or equivalent).
 *
 * A failed `write` or `flush` leaves the output as it was after the last successful
 * flush (a file sink cuts its file back), so the output never holds rows that were
 * not durable when the failure came.
 */
export interface SinkInstance {
  readonly plugin: string
  readonly inputSchema: SchemaConfig
  readonly onStart: Effect.Effect<void, PluginRunError>
  /**
   * Writes a batch. Rows left out with `options.divert` are not in the output and not
   * in the committed state; all others are, once flushed.
   */
  readonly write: (rows: ReadonlyArray<Row>, options?: SinkWriteOptions) => Effect.Effect<void | SinkWriteResult, PluginRunError>
  readonly flush: Effect.Effect<void, PluginRunError>
  readonly onComplete: Effect.Effect<void, PluginRunError>
  readonly close: Effect.Effect<void>
  /** What the sink produced, after close; undefined when nothing was written. */
  readonly artifact: Effect.Effect<ArtifactInfo | undefined, PluginRunError>
  /**
   * The file this sink writes, as configured (`key` below the sink's `options`), for
   * the start-up check that no two writers share a file. Undefined for none (an
   * in-memory database). A sink without it is checked by its `path` option, if any.
   * `part` names the part of the file the sink writes alone (a database table): sinks
   * writing different parts of one file do not conflict.
   */
  readonly outputFile?: { readonly key: string; readonly path: string; readonly part?: string }
  /** The durable state after the last successful flush (built-in sinks have it). */
  readonly committed?: Effect.Effect<SinkCommitted>
  /**
   * Cuts the output back to `state`, a committed state of this or an earlier instance
   * with the same options, so that the next write continues exactly where that state
   * left off: a file is cut to `state.bytes` (opened for appending if this instance
   * has not opened it yet); a table loses the rows past `state.tableRows`, in one
   * transaction. Fails when the output holds less than `state`.
   */
  readonly truncateTo?: (state: SinkCommitted) => Effect.Effect<void, PluginRunError>
}

/** Why a sink's input/output operation failed, by the operating system's error code. */
export type SinkIoReason = "NoSpace" | "PermissionDenied" | "Io" | "Other"

/**
 * An operating-system error while a sink wrote, synced, opened or cut its file. A sink
 * fails with a PluginRunError whose `cause` is this (see `sinkIoErrorOf`); the message
 * names the sink, the path and the cause in words, e.g. `no space left on device (ENOSPC)`.
 */
export class SinkIoError extends Data.TaggedError("SinkIoError")<{
  readonly reason: SinkIoReason
  /** The sink's name in the settings. */
  readonly sink: string
  readonly plugin: string
  readonly path: string
  readonly operation: "open" | "write" | "sync" | "truncate" | "read"
  /** The error code, e.g. `ENOSPC`; undefined when the error had none. */
  readonly code: string | undefined
  /** The cause in words: `no space left on device (ENOSPC)`. */
  readonly description: string
  readonly message: string
  readonly cause?: unknown
}> {}

/** The SinkIoError behind a sink's failure, if it was one. */
export const sinkIoErrorOf = (error: unknown): SinkIoError | undefined => {
  let current: unknown = error
  for (let depth = 0; depth < 8 && current !== null && typeof current === "object"; depth++) {
    if (current instanceof SinkIoError) return current
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

// ---------------------------------------------------------------------------
// Plugin definitions (the registry holds these)

/** What a plugin factory receives besides its options. */
export interface PluginContext {
  /** Name of the entry: the sink name, the transform's `name`, … */
  readonly nodeName: string
  /** Header names of the pipeline's source, for sinks that restore them. */
  readonly sourceHeaders?: () => ReadonlyMap<string, string> | undefined
}

export interface SourcePlugin {
  readonly kind: "source"
  readonly name: string
  readonly description: string
  readonly create: (options: unknown, ctx: PluginContext) => Effect.Effect<SourceInstance, PluginConfigError>
}

export interface TransformPlugin {
  readonly kind: "transform"
  readonly name: string
  readonly description: string
  /** Batch-aware plugins may only be used in `aggregations:`. */
  readonly batchAware: boolean
  readonly create: (options: unknown, ctx: PluginContext) => Effect.Effect<TransformInstance, PluginConfigError>
}

export interface SinkPlugin {
  readonly kind: "sink"
  readonly name: string
  readonly description: string
  readonly create: (options: unknown, ctx: PluginContext) => Effect.Effect<SinkInstance, PluginConfigError>
}

export type AnyPlugin = SourcePlugin | TransformPlugin | SinkPlugin

/** The engine's scoped view of an open sink (built by `openSink`). */
export interface OpenSink {
  readonly name: string
  readonly instance: SinkInstance
  readonly write: (rows: ReadonlyArray<Row>) => Effect.Effect<void, PluginRunError>
  readonly flush: Effect.Effect<void, PluginRunError>
}

export type ScopedSink = Effect.Effect<OpenSink, PluginRunError, Scope.Scope>
