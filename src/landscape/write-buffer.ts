/**
 * The SqlRecorder's write buffer: appended audit records held in memory until a flush
 * writes them. Nothing here touches the database.
 *
 * A node state (or batch) completed while still buffered is updated in place, so the
 * common case never needs an UPDATE statement; a completion of one already written is
 * kept for an UPDATE at flush. Terminal outcomes are tracked per token so that a second
 * one in the same buffer is refused at once.
 */
import { RecorderError } from "../services/recorder.js"
import {
  type AuditRecord,
  type BatchRecord,
  type BatchUpdate,
  type InsertTag,
  type NodeStateCompletion,
  type NodeStateRecord,
  OUTCOMES
} from "../services/records.js"
import { invalid } from "./recorder-errors.js"
import { tableOf } from "./tables.js"

const NONE: ReadonlyArray<AuditRecord> = []

export class WriteBuffer {
  private readonly byTag = new Map<InsertTag, Array<AuditRecord>>()
  /** Open node states, still completable in place. */
  private readonly states = new Map<string, NodeStateRecord>()
  private readonly batches = new Map<string, BatchRecord>()
  /** Completions of node states that were written open by an earlier flush. */
  readonly stateUpdates: Array<NodeStateCompletion> = []
  /** Updates of batches that were written by an earlier flush. */
  readonly batchUpdates: Array<BatchUpdate> = []
  /** Tokens given a terminal outcome in this buffer. */
  readonly terminalTokens = new Set<string>()
  /** Records held, updates included (what triggers an automatic flush). */
  size = 0

  /** Takes `record`, or says why not (and then holds nothing of it). */
  push(record: AuditRecord): RecorderError | undefined {
    switch (record._tag) {
      case "NodeStateCompletion": {
        const state = this.states.get(record.state_id)
        if (state !== undefined) {
          if (state.status !== "open") return invalid(`node state ${record.state_id} is already ${state.status}`)
          state.status = record.status
          state.output_hash = record.output_hash
          state.duration_ms = record.duration_ms
          state.error_json = record.error_json
          state.completed_at = record.completed_at
        } else {
          this.stateUpdates.push(record)
          this.size++
        }
        return undefined
      }
      case "BatchUpdate": {
        const batch = this.batches.get(record.batch_id)
        if (batch !== undefined) {
          batch.status = record.status
          if (record.trigger_type !== null) batch.trigger_type = record.trigger_type
          if (record.trigger_reason !== null) batch.trigger_reason = record.trigger_reason
          if (record.error_json !== null) batch.error_json = record.error_json
          if (record.completed_at !== null) batch.completed_at = record.completed_at
        } else {
          this.batchUpdates.push(record)
          this.size++
        }
        return undefined
      }
      case "NodeState":
        // Only an open state can still change; a finished one goes straight to its list.
        if (record.status !== "open") break
        this.states.set(record.state_id, { ...record })
        this.size++
        return undefined
      case "Batch":
        this.batches.set(record.batch_id, { ...record })
        this.size++
        return undefined
      case "Outcome": {
        if (!OUTCOMES.includes(record.outcome)) return invalid(`unknown outcome ${JSON.stringify(record.outcome)}`)
        if (record.is_terminal === 1) {
          if (this.terminalTokens.has(record.token_id)) {
            return new RecorderError({
              reason: "DuplicateTerminalOutcome",
              message: `token ${record.token_id} already has a terminal outcome; refusing ${record.outcome}`
            })
          }
          this.terminalTokens.add(record.token_id)
        }
        break
      }
      default:
        break
    }
    let list = this.byTag.get(record._tag)
    if (list === undefined) {
      if (tableOf(record._tag) === undefined) {
        return invalid(`unknown record type ${JSON.stringify((record as { _tag?: unknown })._tag)}`)
      }
      list = []
      this.byTag.set(record._tag, list)
    }
    list.push(record)
    this.size++
    return undefined
  }

  /** The records to insert into the table of `tag`. */
  inserts(tag: InsertTag): ReadonlyArray<AuditRecord> {
    if (tag === "NodeState") return [...(this.byTag.get("NodeState") ?? NONE), ...this.states.values()]
    if (tag === "Batch") return Array.from(this.batches.values())
    return this.byTag.get(tag) ?? NONE
  }

  /** Forgets the terminal outcomes of `tokens` (ones the database already has). */
  dropTerminalOutcomes(tokens: ReadonlySet<string>): void {
    const outcomes = this.byTag.get("Outcome")
    if (outcomes === undefined) return
    this.byTag.set(
      "Outcome",
      outcomes.filter((r) => !(r._tag === "Outcome" && r.is_terminal === 1 && tokens.has(r.token_id)))
    )
  }
}
