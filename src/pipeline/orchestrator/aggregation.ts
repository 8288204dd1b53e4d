/**
 * Aggregation buffers and their flushes.
 *
 * A token reaching an aggregation step is buffered in the current batch of that
 * aggregation. After buffering, the count and condition triggers are checked and the
 * batch (including the row just added) is flushed at once when one holds. The timeout
 * trigger is driven by the Clock: `run.ts` keeps one fiber per aggregation that sleeps
 * until the batch's deadline and then calls `flushIfDue`, so a batch flushes at its
 * timeout even while the source is idle; before each source row the engine also calls
 * `flushDue` so a busy source cannot starve it. Every flush path runs under the same
 * lock as row processing and checks the batch generation, so a batch is never flushed
 * twice and no row is lost between two batches.
 *
 * Audit: batches go draft → executing → completed/failed with their trigger type and
 * reason; batch_members link the inputs and batch_outputs the outputs. In `transform`
 * mode inputs end CONSUMED_IN_BATCH and the outputs are new tokens whose parents are
 * the inputs; in `passthrough` mode inputs are BUFFERED until the flush and then
 * continue with their new content. An input the plugin refuses (a per-row error) goes
 * to the aggregation's `on_error` sink (ROUTED), or ends QUARANTINED with its error,
 * while the rest of the batch goes on; a batch refused as a whole sends every member
 * the same way (FAILED when no `on_error` is given).
 */
import { canonicalJsonUnsafe, sha256Hex } from "../../core/canonical.js"
import { evaluateExpression, isTruthy } from "../../core/expression/index.js"
import { newBatchId, newGroupId } from "../../core/ids.js"
import type { NodeStateRecord, TriggerType } from "../../services/records.js"
import type { AggregationStep, PipelinePlan, Target } from "../build.js"
import type { BatchRowError, Row } from "../plugins/protocol.js"
import { ProcessingCrash, type ScheduleTimeout, type Token } from "./tokens.js"
import type { BatchState } from "./checkpoint-state.js"
import type { TrailBuffer } from "./trail-buffer.js"

interface Member {
  readonly token: Token
  readonly state: NodeStateRecord
  readonly started: bigint
}

interface Batch {
  readonly batchId: string
  readonly generation: number
  readonly startedMs: number
  readonly members: Array<Member>
}

const errorText = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e)

/** A flush about to run; the function it returns is called when the flush has run (`ok` false: it threw). */
export type FlushObserver = (flush: {
  readonly step: AggregationStep
  readonly batchId: string
  readonly trigger: TriggerType
  readonly size: number
}) => (ok: boolean) => void

export class Aggregations {
  private readonly batches = new Map<number, Batch>()
  private generation = 0
  /** Batches flushed so far (for checkpoints at aggregation boundaries). */
  flushes = 0
  /** Told of every flush when set (telemetry spans); unset, a flush costs nothing more. */
  flushObserver: FlushObserver | undefined = undefined

  constructor(
    private readonly plan: PipelinePlan,
    private readonly trail: TrailBuffer,
    /** Sends a flushed batch's output tokens on down the chain (the processor's queue). */
    private readonly enqueue: (token: Token, target: Target) => void,
    private readonly scheduleTimeout: ScheduleTimeout,
    /**
     * Sends a batch member the plugin refused to the aggregation's `on_error` sink
     * (ROUTED, along its `on_error` edge); its failed node state is `stateId`.
     */
    private readonly divert: (step: AggregationStep, token: Token, stateId: string, sink: string, context: Record<string, unknown>) => void = () => {
      throw new Error("no on_error routing for aggregations")
    }
  ) {}

  /**
   * A member the plugin refused (one row, or the whole batch): its state is closed
   * failed, its error recorded, and it goes where the aggregation's `on_error` says —
   * a sink (ROUTED), or `discard` / none given (QUARANTINED, as ELSPETH does with a
   * refused row).
   */
  private refuse(step: AggregationStep, batch: Batch, m: Member, reason: Row): void {
    const trail = this.trail
    const errorJson = canonicalJsonUnsafe(reason)
    const sink = step.onError !== undefined && step.onError !== "discard" ? step.onError : undefined
    trail.close(m.state, "failed", m.started, null, reason)
    trail.records.push(m.state, {
      _tag: "TransformError",
      error_id: `err_${m.state.state_id.slice(3)}`,
      run_id: trail.runId,
      token_id: m.token.tokenId,
      node_id: step.nodeId,
      state_id: m.state.state_id,
      row_hash: m.state.input_hash,
      row_json: canonicalJsonUnsafe(m.token.row),
      error_details_json: canonicalJsonUnsafe({ ...reason, retryable: false, attempt: 1 }),
      destination: sink ?? "discard",
      created_at: trail.nowIso()
    })
    if (sink !== undefined) {
      this.divert(step, m.token, m.state.state_id, sink, { reason: "transform_error", node: step.name, batch_id: batch.batchId, error: reason })
      return
    }
    trail.direct(m.token.tokenId, "QUARANTINED", {
      batch_id: batch.batchId,
      error_hash: sha256Hex(errorJson),
      context_json: canonicalJsonUnsafe({ reason: "transform_error", node: step.name, destination: "discard", error: reason })
    })
  }

  /** Aggregation steps of the chain, in order. */
  private get steps(): ReadonlyArray<AggregationStep> {
    return this.plan.chain.filter((s): s is AggregationStep => s.kind === "aggregation")
  }

  /** Tokens currently buffered (for failing them when the run stops). */
  bufferedCount(): number {
    let n = 0
    for (const b of this.batches.values()) n += b.members.length
    return n
  }

  /** The open batches, for a checkpoint: ids, start times and members in buffer order. */
  snapshot(): Array<BatchState> {
    const out: Array<BatchState> = []
    for (const step of this.steps) {
      const batch = this.batches.get(step.step)
      if (batch === undefined || batch.members.length === 0) continue
      out.push({
        step: step.step,
        nodeId: step.nodeId,
        batchId: batch.batchId,
        startedMs: batch.startedMs,
        members: batch.members.map((m) => m.token)
      })
    }
    return out
  }

  /**
   * Reopens the batches of a checkpoint (resume): the same batch ids and members, each
   * member with a fresh node state; a timeout counts from the batch's original start,
   * so a batch whose deadline passed while the run was down flushes at once.
   */
  restore(states: ReadonlyArray<BatchState>): void {
    for (const s of states) {
      const step = this.steps.find((a) => a.step === s.step && a.nodeId === s.nodeId)
      if (step === undefined) throw new Error(`checkpoint names aggregation step ${s.step} (${s.nodeId}), which this pipeline does not have`)
      const batch: Batch = { batchId: s.batchId, generation: ++this.generation, startedMs: s.startedMs, members: [] }
      for (const token of s.members) {
        const state = this.trail.state(token, step.nodeId, step.step, 1, this.trail.tokenHash(token))
        batch.members.push({ token, state, started: this.trail.nanos() })
      }
      this.batches.set(step.step, batch)
      const timeout = step.settings.trigger.timeout_seconds
      if (timeout !== undefined) this.scheduleTimeout(step, batch.generation, batch.startedMs + timeout * 1000)
    }
  }

  /** Buffers `token` at `step`; flushes at once when count or condition fires. */
  buffer(step: AggregationStep, token: Token): void {
    const trail = this.trail
    let batch = this.batches.get(step.step)
    const nowMs = trail.clock.unsafeCurrentTimeMillis()
    if (batch === undefined) {
      batch = { batchId: newBatchId(), generation: ++this.generation, startedMs: nowMs, members: [] }
      this.batches.set(step.step, batch)
      trail.records.push({
        _tag: "Batch",
        batch_id: batch.batchId,
        run_id: trail.runId,
        aggregation_node_id: step.nodeId,
        trigger_type: null,
        trigger_reason: null,
        status: "draft",
        attempt: 1,
        error_json: null,
        created_at: trail.nowIso(),
        completed_at: null
      })
      const timeout = step.settings.trigger.timeout_seconds
      if (timeout !== undefined) this.scheduleTimeout(step, batch.generation, batch.startedMs + timeout * 1000)
    }
    const state = trail.state(token, step.nodeId, step.step, 1, trail.tokenHash(token))
    batch.members.push({ token, state, started: trail.nanos() })
    trail.records.push({ _tag: "BatchMember", batch_id: batch.batchId, token_id: token.tokenId, ordinal: batch.members.length - 1 })
    if ((step.settings.output_mode ?? "transform") === "passthrough") {
      trail.direct(token.tokenId, "BUFFERED", { batch_id: batch.batchId })
    }

    const trigger = step.settings.trigger
    if (trigger.count !== undefined && batch.members.length >= trigger.count) {
      return this.flush(step, "count", `count ${trigger.count} reached`)
    }
    const ageSeconds = (nowMs - batch.startedMs) / 1000
    if (trigger.timeout_seconds !== undefined && ageSeconds >= trigger.timeout_seconds) {
      return this.flush(step, "timeout", `timeout ${trigger.timeout_seconds}s elapsed`)
    }
    if (step.condition !== undefined) {
      const result = evaluateExpression(step.condition, { batch_count: batch.members.length, batch_age_seconds: ageSeconds })
      if (result._tag === "Left") {
        throw new ProcessingCrash(`aggregation '${step.name}' trigger condition failed: ${result.left.message}`, step.name, token.rowIndex)
      }
      if (result.right.type !== "bool") {
        throw new ProcessingCrash(`aggregation '${step.name}' trigger condition gave a non-boolean value`, step.name, token.rowIndex)
      }
      if (isTruthy(result.right)) return this.flush(step, "condition", `condition ${step.settings.trigger.condition} true`)
    }
  }

  /** Flushes every batch whose timeout has passed (before a source row is processed). */
  flushDue(): void {
    const nowMs = this.trail.clock.unsafeCurrentTimeMillis()
    for (const step of this.steps) {
      const batch = this.batches.get(step.step)
      const timeout = step.settings.trigger.timeout_seconds
      if (batch !== undefined && timeout !== undefined && nowMs - batch.startedMs >= timeout * 1000) {
        this.flush(step, "timeout", `timeout ${timeout}s elapsed`)
      }
    }
  }

  /** From the timer fiber: flushes the batch of `generation` if it is still the open one and due. */
  flushIfDue(step: AggregationStep, generation: number): boolean {
    const batch = this.batches.get(step.step)
    const timeout = step.settings.trigger.timeout_seconds
    if (batch === undefined || batch.generation !== generation || timeout === undefined) return false
    if (this.trail.clock.unsafeCurrentTimeMillis() - batch.startedMs < timeout * 1000) {
      // A live timer may wake a little before its deadline (setTimeout vs Date.now);
      // the wake is used up, so ask for another or the batch waits for the next row.
      this.scheduleTimeout(step, generation, batch.startedMs + timeout * 1000)
      return false
    }
    this.flush(step, "timeout", `timeout ${timeout}s elapsed`)
    return true
  }

  /** End of source: flushes every non-empty buffer in aggregation order, running outputs downstream. */
  flushAll(runOutputs: () => void): void {
    for (const step of this.steps) {
      if (this.batches.has(step.step)) {
        this.flush(step, "end_of_source", "end of source")
        runOutputs()
      }
    }
  }

  /** The run is stopping: buffered tokens end FAILED, their batches failed. */
  failAll(reason: string): void {
    for (const step of this.steps) {
      const batch = this.batches.get(step.step)
      if (batch === undefined) continue
      this.batches.delete(step.step)
      this.failBatch(step, batch, { reason })
    }
  }

  private failBatch(step: AggregationStep, batch: Batch, error: Record<string, unknown>): void {
    const trail = this.trail
    const errorJson = canonicalJsonUnsafe(error)
    for (const m of batch.members) {
      trail.close(m.state, "failed", m.started, null, error)
      trail.records.push(m.state)
      trail.direct(m.token.tokenId, "FAILED", { batch_id: batch.batchId, error_hash: sha256Hex(errorJson) })
    }
    this.batchFailed(batch, errorJson)
    void step
  }

  private batchFailed(batch: Batch, errorJson: string): void {
    this.trail.records.push({
      _tag: "BatchUpdate",
      batch_id: batch.batchId,
      status: "failed",
      trigger_type: null,
      trigger_reason: null,
      error_json: errorJson,
      completed_at: this.trail.nowIso()
    })
  }

  private flush(step: AggregationStep, trigger: TriggerType, reason: string): void {
    const observer = this.flushObserver
    const batch = observer === undefined ? undefined : this.batches.get(step.step)
    if (observer === undefined || batch === undefined || batch.members.length === 0) return this.runFlush(step, trigger, reason)
    const done = observer({ step, batchId: batch.batchId, trigger, size: batch.members.length })
    let ok = false
    try {
      this.runFlush(step, trigger, reason)
      ok = true
    } finally {
      done(ok)
    }
  }

  /** Runs the batch plugin over the batch and sends the outputs on. */
  private runFlush(step: AggregationStep, trigger: TriggerType, reason: string): void {
    const trail = this.trail
    const batch = this.batches.get(step.step)
    if (batch === undefined || batch.members.length === 0) return
    this.batches.delete(step.step)
    this.flushes++
    trail.records.push({
      _tag: "BatchUpdate",
      batch_id: batch.batchId,
      status: "executing",
      trigger_type: trigger,
      trigger_reason: reason,
      error_json: null,
      completed_at: null
    })
    let first = batch.members[0]!.token
    const crash = (message: string, cause?: unknown): never => {
      this.failBatch(step, batch, { message })
      throw new ProcessingCrash(`aggregation '${step.name}' failed: ${message}`, step.name, first.rowIndex, cause)
    }
    let result
    try {
      result = step.instance.processBatch(batch.members.map((m) => m.token.row))
    } catch (e) {
      return crash(errorText(e), e)
    }
    if (result._tag === "Error") {
      // A batch the plugin refuses as a whole: its members go to on_error when it is
      // given (a sink, or discard); without it they end FAILED.
      if (step.onError === undefined) {
        this.failBatch(step, batch, { batch_error: result.reason })
        return
      }
      for (const m of batch.members) this.refuse(step, batch, m, { batch_error: result.reason })
      this.batchFailed(batch, canonicalJsonUnsafe({ batch_error: result.reason, on_error: step.onError }))
      return
    }
    if (result.rowErrors !== undefined && result.rowErrors.length > 0) {
      const kept = this.quarantineRefused(step, batch, result.rowErrors)
      if (typeof kept === "string") return crash(kept)
      // Outputs of the whole batch belong to its first input the plugin kept.
      if (batch.members.length > 0) first = batch.members[0]!.token
      if (result.origins !== undefined) {
        const origins = result.origins.map((o) => kept.get(o) ?? -1)
        if (origins.includes(-1)) return crash("the plugin derived outputs from an input it refused")
        result = { ...result, origins }
      }
    }
    const outputs: ReadonlyArray<Row> = result.rows
    const mode = step.settings.output_mode ?? "transform"
    const next = step.step // replaced by the processor from step.onSuccess
    if (mode === "transform") {
      const expected = step.settings.expected_output_count
      if (expected !== undefined && outputs.length !== expected) {
        return crash(`expected ${expected} output rows (expected_output_count), got ${outputs.length}`)
      }
      const origins = result.origins
      if (origins !== undefined) {
        if (origins.length !== outputs.length || origins.some((o) => !(o >= 0 && o < batch.members.length))) {
          return crash(`the plugin's output origins do not match its ${outputs.length} outputs`)
        }
        // Deaggregation: each input is EXPANDED into the outputs derived from it.
        const groups = batch.members.map(() => newGroupId())
        batch.members.forEach((m, i) => {
          trail.close(m.state, "completed", m.started, trail.hashRow(outputs.filter((_, j) => origins[j] === i)))
          trail.records.push(m.state)
          trail.direct(m.token.tokenId, "EXPANDED", { batch_id: batch.batchId, expand_group_id: groups[i]! })
        })
        outputs.forEach((row, ordinal) => {
          const parent = batch.members[origins[ordinal]!]!.token
          const token = trail.newToken(parent, row, next, {
            parents: [parent.tokenId],
            expandGroupId: groups[origins[ordinal]!]!,
            branch: parent.branch
          })
          trail.records.push({ _tag: "BatchOutput", batch_id: batch.batchId, token_id: token.tokenId, ordinal })
          this.enqueue(token, step.onSuccess)
        })
        return this.complete(batch, trigger, reason)
      }
      const outputHash = trail.hashRow(outputs)
      for (const m of batch.members) {
        trail.close(m.state, "completed", m.started, outputHash)
        trail.records.push(m.state)
        trail.direct(m.token.tokenId, "CONSUMED_IN_BATCH", { batch_id: batch.batchId })
      }
      const parents = batch.members.map((m) => m.token.tokenId)
      outputs.forEach((row, ordinal) => {
        const token = trail.newToken(first, row, next, { parents, branch: first.branch })
        trail.records.push({ _tag: "BatchOutput", batch_id: batch.batchId, token_id: token.tokenId, ordinal })
        this.enqueue(token, step.onSuccess)
      })
    } else {
      if (outputs.length !== batch.members.length) {
        return crash(`passthrough mode needs one output row per buffered row: ${batch.members.length} in, ${outputs.length} out`)
      }
      batch.members.forEach((m, i) => {
        const row = outputs[i]!
        const hash = trail.hashRow(row)
        trail.close(m.state, "completed", m.started, hash)
        trail.records.push(m.state)
        trail.records.push({ _tag: "BatchOutput", batch_id: batch.batchId, token_id: m.token.tokenId, ordinal: i })
        // the token goes on with its output row, and that row's hash (not its input's)
        this.enqueue({ ...m.token, row, next, attempt: 1, hash }, step.onSuccess)
      })
    }
    this.complete(batch, trigger, reason)
  }

  /**
   * Inputs the plugin refused (`rowErrors`) end QUARANTINED with their error, recorded
   * in `transform_errors` like a row transform's error with `on_error: discard`, and
   * leave the batch, which goes on with the rest. Returns the new index of each kept
   * input by its old one, or why the plugin's answer is unusable.
   */
  private quarantineRefused(
    step: AggregationStep,
    batch: Batch,
    rowErrors: ReadonlyArray<BatchRowError>
  ): ReadonlyMap<number, number> | string {
    const refused = new Map<number, BatchRowError>()
    for (const e of rowErrors) {
      if (!(Number.isInteger(e.index) && e.index >= 0 && e.index < batch.members.length) || refused.has(e.index)) {
        return `the plugin refused input ${e.index}, which is not one of the batch's ${batch.members.length} inputs (or refused it twice)`
      }
      refused.set(e.index, e)
    }
    const kept = new Map<number, number>()
    const members: Array<Member> = []
    batch.members.forEach((m, i) => {
      const e = refused.get(i)
      if (e === undefined) {
        kept.set(i, members.length)
        members.push(m)
        return
      }
      this.refuse(step, batch, m, e.reason)
    })
    // The batch is out of the open buffers: what follows (and a crash) sees only the kept inputs.
    batch.members.splice(0, batch.members.length, ...members)
    return kept
  }

  private complete(batch: Batch, trigger: TriggerType, reason: string): void {
    this.trail.records.push({
      _tag: "BatchUpdate",
      batch_id: batch.batchId,
      status: "completed",
      trigger_type: trigger,
      trigger_reason: reason,
      error_json: null,
      completed_at: this.trail.nowIso()
    })
  }
}
