/**
 * The audit records of the current unit of work, built on the hot path as plain
 * objects and kept until the driver (run.ts) drains them into one `append` call.
 *
 * The processor and its stateful steps build every node state, outcome and token
 * record through here, so ids, timestamps, row hashes and the outcome count are made
 * the same way everywhere. Outcomes held for a sink are built here too but counted
 * only when the sink commits them (see sinks.ts).
 */
import type { Clock } from "effect"
import { canonicalJsonUnsafe, sha256Hex } from "../../core/canonical.js"
import { newOutcomeId, newStateId, newTokenId, type NodeId, type RunId } from "../../core/ids.js"
import type { AuditRecord, NodeStateRecord, Outcome, OutcomeRecord } from "../../services/records.js"
import type { Row } from "../plugins/protocol.js"
import type { AggregationFlushResult } from "./types.js"
import { Tally } from "./tally.js"
import type { Token } from "./tokens.js"

/** How a token created mid-chain links into the trail. */
export interface TokenLinks {
  readonly parents?: ReadonlyArray<string>
  readonly forkGroupId?: string
  readonly joinGroupId?: string
  readonly expandGroupId?: string
  readonly branch?: string | null
  readonly forks?: Readonly<Record<number, string>> | undefined
}

const hasOwn = Object.prototype.hasOwnProperty

/**
 * Whether `b` has exactly the own enumerable keys of `a`, each holding the identical
 * string, finite number, boolean or null. Anything else (a nested value, undefined,
 * a bigint, an inherited key) answers false, and the caller hashes the row in full.
 */
export const sameFlatValues = (a: Row, b: Row): boolean => {
  let keys = 0
  for (const k in b) {
    if (!hasOwn.call(b, k) || !hasOwn.call(a, k)) return false
    const v = b[k]
    if (v !== a[k]) return false
    if (v !== null && typeof v !== "string" && typeof v !== "boolean" && (typeof v !== "number" || !Number.isFinite(v))) return false
    keys++
  }
  for (const k in a) {
    if (!hasOwn.call(a, k)) return false
    keys--
  }
  return keys === 0
}

export class TrailBuffer {
  /** Records to append to the Landscape (drained by the driver after each chunk). */
  records: Array<AuditRecord> = []
  /** Counts of the outcomes in `records` (not the held ones). */
  private tally = new Tally()
  private readonly hashes = new WeakMap<object, string>()
  private lastMs = -1
  private lastIso = ""

  constructor(
    readonly runId: RunId,
    readonly clock: Clock.Clock
  ) {}

  nowIso(): string {
    const ms = this.clock.unsafeCurrentTimeMillis()
    if (ms !== this.lastMs) {
      this.lastMs = ms
      this.lastIso = new Date(ms).toISOString()
    }
    return this.lastIso
  }

  nanos(): bigint {
    return this.clock.unsafeCurrentTimeNanos()
  }

  /** SHA-256 of the canonical JSON of `row`; cached per object, since a row is hashed at every step. */
  hashRow(row: unknown): string {
    if (row !== null && typeof row === "object") {
      const cached = this.hashes.get(row)
      if (cached !== undefined) return cached
      const h = sha256Hex(canonicalJsonUnsafe(row))
      this.hashes.set(row, h)
      return h
    }
    return sha256Hex(canonicalJsonUnsafe(row))
  }

  /**
   * The hash of a transform's output row. A transform that returns a copy of its input
   * with every value the same (a passthrough, a filter that kept the row, a mapping
   * that renamed nothing) gets the input's hash without hashing the row again: the
   * canonical JSON of two objects with the same keys and the same primitive values is
   * the same text. The check is shallow and only trusts primitives; a row holding a
   * nested object or list is hashed in full, since a plugin may have changed that
   * object in place before copying the row.
   */
  hashOutput(input: Row, inputHash: string, output: unknown): string {
    if (output !== input && output !== null && typeof output === "object" && !Array.isArray(output) && sameFlatValues(input, output as Row)) {
      return inputHash
    }
    return this.hashRow(output)
  }

  /** The hash of the token's row: the one it carries, or the row hashed now. */
  tokenHash(token: Token): string {
    return token.hash ?? this.hashRow(token.row)
  }


  state(token: Token, nodeId: NodeId, step: number, attempt: number, inputHash: string): NodeStateRecord {
    return {
      _tag: "NodeState",
      state_id: newStateId(),
      token_id: token.tokenId,
      run_id: this.runId,
      node_id: nodeId,
      step_index: step,
      attempt,
      status: "open",
      input_hash: inputHash,
      output_hash: null,
      duration_ms: null,
      error_json: null,
      started_at: this.nowIso(),
      completed_at: null
    }
  }

  close(state: NodeStateRecord, status: "completed" | "failed", started: bigint, outputHash: string | null, error?: unknown): void {
    state.status = status
    state.output_hash = outputHash
    state.duration_ms = Number(this.nanos() - started) / 1e6
    state.error_json = error === undefined ? null : canonicalJsonUnsafe(error)
    state.completed_at = this.nowIso()
  }

  outcome(tokenId: string, outcome: Outcome, extra: Partial<OutcomeRecord> = {}): OutcomeRecord {
    return {
      _tag: "Outcome",
      outcome_id: newOutcomeId(),
      run_id: this.runId,
      token_id: tokenId,
      outcome,
      is_terminal: outcome === "BUFFERED" ? 0 : 1,
      sink_name: null,
      batch_id: null,
      fork_group_id: null,
      join_group_id: null,
      expand_group_id: null,
      error_hash: null,
      context_json: null,
      recorded_at: this.nowIso(),
      ...extra
    }
  }

  /** Records a new token (and its parents) and returns it, ready to run from `next`. */
  newToken(base: { readonly rowId: string; readonly rowIndex: number }, row: Row, next: number, links: TokenLinks): Token {
    const tokenId = newTokenId()
    this.records.push({
      _tag: "Token",
      token_id: tokenId,
      run_id: this.runId,
      row_id: base.rowId,
      fork_group_id: links.forkGroupId ?? null,
      join_group_id: links.joinGroupId ?? null,
      expand_group_id: links.expandGroupId ?? null,
      branch_name: links.branch ?? null,
      created_at: this.nowIso()
    })
    ;(links.parents ?? []).forEach((parent, ordinal) =>
      this.records.push({ _tag: "TokenParent", token_id: tokenId, parent_token_id: parent, ordinal })
    )
    const token: Token = { tokenId, rowId: base.rowId, rowIndex: base.rowIndex, row, next, branch: links.branch ?? null, attempt: 1 }
    return links.forks === undefined ? token : { ...token, forks: links.forks }
  }

  /** Records an outcome that needs no sink write (FAILED, EXPANDED, …) and counts it. */
  direct(tokenId: string, outcome: Outcome, extra: Partial<OutcomeRecord> = {}): void {
    this.records.push(this.outcome(tokenId, outcome, extra))
    this.tally.add(outcome, undefined)
  }

  countCoalesceFailure(): void {
    this.tally.addFailedCoalesce()
  }

  /** Takes the records built so far and what their outcomes count. */
  /** The records built since the last drain and what their outcomes count (`undefined`: nothing counted). */
  drain(): { readonly records: Array<AuditRecord>; readonly result: AggregationFlushResult | undefined } {
    const records = this.records
    this.records = []
    if (this.tally.isEmpty()) return { records, result: undefined }
    const result = this.tally.toResult()
    this.tally = new Tally()
    return { records, result }
  }
}
