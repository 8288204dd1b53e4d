/**
 * What a checkpoint holds: everything a resumed attempt needs to continue as if the
 * run had never stopped. Written as typed state JSON (core/state-json.ts) in the
 * `state_json` column of the checkpoint, in the same transaction as the audit records
 * of the rows it covers.
 */
import type { SinkCommitted, SourcePosition } from "../plugins/protocol.js"

export const CHECKPOINT_STATE_VERSION = 1

/** A token as the processor holds it (see tokens.ts), in plain data. */
export interface TokenState {
  readonly tokenId: string
  readonly rowId: string
  readonly rowIndex: number
  readonly row: Readonly<Record<string, unknown>>
  readonly next: number
  readonly branch: string | null
  readonly attempt: number
  readonly forks?: Readonly<Record<number, string>>
}

/** An open aggregation batch: its id and members in buffer order. */
export interface BatchState {
  /** Chain index of the aggregation step. */
  readonly step: number
  readonly nodeId: string
  readonly batchId: string
  /** Clock time the batch opened (its timeout counts from here). */
  readonly startedMs: number
  readonly members: ReadonlyArray<TokenState>
}

/** A coalesce group waiting for siblings. */
export interface CoalesceGroupState {
  /** Index of the coalesce among the plan's coalesces. */
  readonly index: number
  readonly nodeId: string
  readonly key: string
  readonly startedMs: number
  readonly arrived: ReadonlyArray<{ readonly branch: string; readonly token: TokenState }>
}

/** The source file a run reads, as it was when the run started. */
export interface SourceFileState {
  readonly path: string
  readonly size: number
  readonly sha256: string
}

export interface CheckpointState {
  readonly version: number
  /** The attempt that wrote it (1 for the first run, +1 per resume). */
  readonly attempt: number
  readonly source: {
    /** Source items (valid and invalid rows) fully processed: the next row index. */
    readonly items: number
    /**
     * Where reading can restart in the source file, as the source reported it with the
     * last processed item (the byte offset after it and the lines read); null when the
     * source does not say — then a resume reads and skips `items` items.
     */
    readonly position: SourcePosition | null
    readonly file: SourceFileState | null
  }
  /** Committed state of each sink, by sink name. */
  readonly sinks: Readonly<Record<string, SinkCommitted>>
  readonly aggregations: ReadonlyArray<BatchState>
  readonly coalesces: ReadonlyArray<CoalesceGroupState>
  /** The RunResult counts so far (AggregationFlushResult fields). */
  readonly totals: Readonly<Record<string, unknown>>
  readonly rowsProcessed: number
  readonly topologyHash: string
  /** Config hash of every node, by node id. */
  readonly nodes: Readonly<Record<string, string>>
}
