/**
 * The row processor: the hot path. One source item at a time, a token and every token
 * derived from it (explode children, aggregation outputs) run through the chain before
 * the next item, breadth-first in creation order.
 *
 * It is synchronous on purpose: it builds the audit records of a row as plain objects
 * (in its TrailBuffer) and queues the row for its sink; the driver (run.ts) appends
 * the records in one call per chunk and makes sink writes durable in batches (see
 * sinks.ts). Outcomes of rows bound for a sink are *held* with that sink and reach the
 * trail only after the sink's flush: a row is COMPLETED/ROUTED/QUARANTINED only once
 * its write is durable.
 *
 * Transforms and gates run here; aggregations and coalesces keep state across rows
 * and live in their own modules, sharing the TrailBuffer and the processor's queue.
 *
 * A retryable transform error with attempts left suspends the processor with a delay;
 * the driver sleeps on the Clock and resumes it.
 */
import type { Clock } from "effect"
import { canonicalJsonUnsafe, sha256Hex } from "../../core/canonical.js"
import { evaluateExpression, routeLabel } from "../../core/expression/index.js"
import { type EdgeId, newGroupId, newRowId, newTokenId, type NodeId, type RunId } from "../../core/ids.js"
import type { AuditRecord, NodeStateRecord, OutcomeRecord } from "../../services/records.js"
import type { GateStep, PipelinePlan, Target, TransformStep } from "../build.js"
import type { Row, SourceItem, TransformResult } from "../plugins/protocol.js"
import { Aggregations } from "./aggregation.js"
import { Coalesces } from "./coalesce.js"
import { ProcessingCrash, type ScheduleCoalesceTimeout, type ScheduleTimeout, type Token } from "./tokens.js"
import { TrailBuffer } from "./trail-buffer.js"

export interface RetryPolicy {
  readonly maxAttempts: number
  readonly initialDelayMs: number
  readonly maxDelayMs: number
  readonly base: number
}

export const retryPolicyOf = (plan: PipelinePlan): RetryPolicy => {
  const r = plan.settings.retry
  return {
    maxAttempts: r?.max_attempts ?? 3,
    initialDelayMs: (r?.initial_delay_seconds ?? 0.1) * 1000,
    maxDelayMs: (r?.max_delay_seconds ?? 10) * 1000,
    base: r?.exponential_base ?? 2
  }
}

/** Rows bound for one sink, with the records to commit once they are durable. */
export interface SinkQueue {
  readonly name: string
  readonly nodeId: NodeId
  rows: Array<Row>
  held: Array<HeldOutcome>
}

export interface HeldOutcome {
  readonly state: NodeStateRecord
  readonly outcome: OutcomeRecord
  /** Monotonic nanoseconds when the row was queued (for the sink state's duration). */
  readonly queuedAt: bigint
  /** The source row's index (the pooled path puts a sink's queue back in source order by it). */
  readonly order: number
}

/** A token waiting at an external transform (`llm`, `http`) for its call; see external-calls.ts. */
export interface ParkedCall {
  readonly token: Token
  readonly step: TransformStep
  readonly state: NodeStateRecord
  readonly started: bigint
  readonly inputHash: string
}

export type StepResult = { readonly _tag: "Done" } | { readonly _tag: "Sleep"; readonly millis: number }

const DONE: StepResult = { _tag: "Done" }

/** A gate's route: its edge, the routing reason, and the context of a row it sends to a sink. */
interface GateRoute {
  readonly edgeId: EdgeId
  readonly reasonJson: string
  readonly routedJson: string
}

const VALIDATION_FAILED = canonicalJsonUnsafe({ reason: "validation_failed" })

const errorText = (e: unknown): string => (e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e))

export class Processor {
  /** The audit records built so far and what their outcomes count (drained by the driver). */
  readonly trail: TrailBuffer
  rowsProcessed = 0
  readonly sinkQueues = new Map<string, SinkQueue>()
  private queue: Array<Token> = []
  /** Tokens waiting at an external transform, in the order they got there (the driver calls and resumes them). */
  parked: Array<ParkedCall> = []
  /** What every row a gate sends along one route shares, by gate index, then label. */
  private readonly gateRoutes = new Map<number, Map<string, GateRoute>>()
  private readonly sinkStep: number
  private readonly retry: RetryPolicy
  readonly aggregations: Aggregations
  readonly coalesces: Coalesces

  constructor(
    readonly plan: PipelinePlan,
    runId: RunId,
    clock: Clock.Clock,
    private readonly edgeIds: ReadonlyMap<string, EdgeId>,
    timers: { readonly aggregation: ScheduleTimeout; readonly coalesce: ScheduleCoalesceTimeout } = {
      aggregation: () => {},
      coalesce: () => {}
    }
  ) {
    this.trail = new TrailBuffer(runId, clock)
    const enqueue = (token: Token, target: Target) => this.emit(token, target)
    this.aggregations = new Aggregations(plan, this.trail, enqueue, timers.aggregation, (step, token, stateId, sink, context) => {
      this.trail.records.push({
        _tag: "RoutingEvent",
        event_id: `evt_${stateId.slice(3)}`,
        state_id: stateId,
        edge_id: this.edge(step.nodeId, "on_error"),
        routing_group_id: `grp_${stateId.slice(3)}`,
        ordinal: 0,
        mode: "divert",
        reason_json: canonicalJsonUnsafe({ on_error: sink, error: context.error }),
        created_at: this.trail.nowIso()
      })
      this.toSink(token, token.row, sink, "ROUTED", canonicalJsonUnsafe(context))
    })
    this.coalesces = new Coalesces(plan, this.trail, enqueue, timers.coalesce)
    this.sinkStep = plan.chain.length + 1
    this.retry = retryPolicyOf(plan)
    for (const [name, sink] of plan.sinks) this.sinkQueues.set(name, { name, nodeId: sink.nodeId, rows: [], held: [] })
  }

  private gateRoute(step: GateStep, label: string, destination: string): GateRoute {
    let byLabel = this.gateRoutes.get(step.index)
    if (byLabel === undefined) this.gateRoutes.set(step.index, byLabel = new Map())
    let route = byLabel.get(label)
    if (route === undefined) {
      route = {
        edgeId: this.edge(step.nodeId, label),
        reasonJson: canonicalJsonUnsafe({ condition: step.settings.condition, result: label, destination }),
        routedJson: canonicalJsonUnsafe({ gate: step.name, label })
      }
      byLabel.set(label, route)
    }
    return route
  }

  private edge(from: NodeId, label: string): EdgeId {
    const id = this.edgeIds.get(`${from}|${label}`)
    if (id === undefined) throw new Error(`no edge from ${from} labelled ${label}`)
    return id
  }

  /** Queues `row` for `sinkName`; its outcome is held until the sink's write is durable. */
  private toSink(token: Token, row: Row, sinkName: string, outcome: "COMPLETED" | "ROUTED" | "QUARANTINED", contextJson: string | null = null): void {
    const queue = this.sinkQueues.get(sinkName)
    if (queue === undefined) throw new ProcessingCrash(`no sink named '${sinkName}'`, sinkName, token.rowIndex)
    const state = this.trail.state(token, queue.nodeId, this.sinkStep, 1, row === token.row ? this.trail.tokenHash(token) : this.trail.hashRow(row))
    queue.rows.push(row)
    queue.held.push({
      state,
      outcome: this.trail.outcome(token.tokenId, outcome, {
        sink_name: sinkName,
        context_json: contextJson
      }),
      queuedAt: this.trail.nanos(),
      order: token.rowIndex
    })
  }

  /** Rows waiting for a sink write, over all sinks. */
  pendingRows(): number {
    let n = 0
    for (const q of this.sinkQueues.values()) n += q.rows.length
    return n
  }

  // -------------------------------------------------------------------------
  // Source items

  /** Records the row and its root token and queues the token (or quarantines the item). */
  startItem(item: SourceItem): void {
    const rowIndex = this.rowsProcessed++
    const rowId = newRowId()
    const tokenId = newTokenId()
    const now = this.trail.nowIso()
    const payload = item._tag === "Valid" ? item.row : item.raw
    let json: string
    try {
      json = canonicalJsonUnsafe(payload)
    } catch (e) {
      // A payload that cannot be hashed is kept as text so that the row is not lost.
      // JSON.stringify escapes what RFC 8785 cannot encode (a lone surrogate).
      let text: string
      try {
        text = JSON.stringify(payload) ?? String(payload)
      } catch {
        text = String(payload)
      }
      json = canonicalJsonUnsafe({ __unhashable__: text, error: errorText(e) })
    }
    const hash = sha256Hex(json)
    this.trail.records.push(
      {
        _tag: "Row",
        row_id: rowId,
        run_id: this.trail.runId,
        source_node_id: this.plan.source.nodeId,
        row_index: rowIndex,
        source_data_hash: hash,
        source_data_json: json,
        created_at: now
      },
      {
        _tag: "Token",
        token_id: tokenId,
        run_id: this.trail.runId,
        row_id: rowId,
        fork_group_id: null,
        join_group_id: null,
        expand_group_id: null,
        branch_name: null,
        created_at: now
      }
    )
    const token: Token = item._tag === "Valid"
      ? { tokenId, rowId, rowIndex, row: item.row, next: 0, branch: null, attempt: 1, hash }
      : { tokenId, rowId, rowIndex, row: {}, next: 0, branch: null, attempt: 1 }
    if (item._tag === "Valid") {
      // Batches whose timeout passed flush before the new row joins any batch.
      try {
        this.aggregations.flushDue()
      } catch (e) {
        this.trail.direct(tokenId, "FAILED", { context_json: canonicalJsonUnsafe({ reason: "run stopped" }) })
        throw e
      }
      this.emit(token, this.plan.source.onSuccess)
      return
    }
    const destination = this.plan.source.instance.onValidationFailure
    this.trail.records.push({
      _tag: "ValidationError",
      error_id: `err_${tokenId.slice(4)}`,
      run_id: this.trail.runId,
      node_id: this.plan.source.nodeId,
      row_id: rowId,
      row_hash: hash,
      row_json: json,
      error: item.error,
      schema_mode: this.plan.source.instance.schema.mode,
      destination,
      created_at: now
    })
    if (destination === "discard") {
      this.trail.direct(tokenId, "QUARANTINED", { context_json: canonicalJsonUnsafe({ reason: "validation_failed", destination: "discard" }) })
    } else {
      const raw = item.raw
      const row: Row = raw !== null && typeof raw === "object" && !Array.isArray(raw) ? (raw as Row) : { __raw_value__: raw }
      this.toSink(token, row, destination, "QUARANTINED", VALIDATION_FAILED)
    }
  }

  /** Whether any token is queued, buffered in a batch or waiting at a coalesce. */
  /** A token is part-way through the chain (a row was interrupted mid-way or waits for a retry). */
  midItem(): boolean {
    return this.queue.length > 0 || this.parked.length > 0
  }

  hasInFlight(): boolean {
    return this.queue.length > 0 || this.parked.length > 0 || this.aggregations.bufferedCount() > 0 || this.coalesces.pendingCount() > 0
  }

  /** Marks every in-flight, buffered and pending token FAILED (the run is stopping). */
  failInFlight(reason: string): void {
    for (const t of this.queue) this.trail.direct(t.tokenId, "FAILED", { context_json: canonicalJsonUnsafe({ reason }) })
    this.queue = []
    for (const p of this.parked) {
      this.trail.close(p.state, "failed", p.started, null, { reason })
      this.trail.records.push(p.state)
      this.trail.direct(p.token.tokenId, "FAILED", { context_json: canonicalJsonUnsafe({ reason }) })
    }
    this.parked = []
    this.aggregations.failAll(reason)
    this.coalesces.failAll(reason)
  }

  /** End of source: flush every batch (outputs run downstream), then resolve pending coalesces. */
  endOfSource(): void {
    this.aggregations.flushAll(() => this.runToCompletion())
    this.coalesces.resolveAll()
    this.runToCompletion()
  }

  /** Runs the queue; tokens past the transforms never need a retry wait. */
  runToCompletion(): void {
    const r = this.run()
    if (r._tag === "Sleep") throw new Error("a token after the transforms asked for a retry wait")
  }

  // -------------------------------------------------------------------------
  // External calls

  /** Opens the token's state at an external transform and leaves it waiting for its call. */
  private park(step: TransformStep, token: Token): void {
    const inputHash = this.trail.tokenHash(token)
    const state = this.trail.state(token, step.nodeId, step.step, 1, inputHash)
    this.parked.push({ token, step, state, started: this.trail.nanos(), inputHash })
  }

  /**
   * Continues a parked token with its call's result (`records`: the call's audit
   * records, which reference the parked state) and runs it on down the chain.
   */
  resume(p: ParkedCall, result: TransformResult, records: ReadonlyArray<AuditRecord>): StepResult {
    for (const r of records) this.trail.records.push(r)
    this.queue.push({ ...p.token, resolved: { result, state: p.state, started: p.started, inputHash: p.inputHash } })
    return this.run()
  }

  // -------------------------------------------------------------------------
  // Running tokens

  /** Runs queued tokens until the queue is empty or a retry needs to wait. */
  run(): StepResult {
    while (this.queue.length > 0) {
      const token = this.queue[0]!
      const result = this.runToken(token)
      if (result !== DONE) return result
      this.queue.shift()
    }
    // Every fork of this unit of work has delivered all its children by now — unless some
    // wait at an external call (they arrive when resumed).
    if (this.parked.length === 0) this.coalesces.unitDone()
    return DONE
  }

  /** The token as it moves on to `target`: a step (returned), or queued for a sink, or arrived at a coalesce (undefined). */
  private advance(token: Token, target: Target): Token | undefined {
    switch (target._tag) {
      case "Step":
        return this.moved(token, target.index)
      case "End":
        return this.moved(token, this.plan.chain.length)
      case "Sink":
        return { ...token, next: this.plan.chain.length, attempt: 1, sink: target.name }
      case "Coalesce":
        this.coalesces.arrive(this.plan.coalesces[target.index]!, { ...token, branch: target.branch })
        return undefined
    }
  }

  /** The token, unchanged, about to run the step at `next` (a fresh attempt). */
  private moved(token: Token, next: number): Token {
    const moved: Token = { tokenId: token.tokenId, rowId: token.rowId, rowIndex: token.rowIndex, row: token.row, next, branch: token.branch, attempt: 1, hash: token.hash }
    return token.forks === undefined ? moved : { ...moved, forks: token.forks }
  }

  /** Sends a token created off the queue's head (a split, a batch output, a merge) on to `target`. */
  private emit(token: Token, target: Target): void {
    const moved = this.advance(token, target)
    if (moved !== undefined) this.queue.push(moved)
  }

  /** Runs one token from its `next` step to a sink, a buffer or a drop. Mutates the queue head on retry. */
  private runToken(start: Token): StepResult {
    let token = start
    const chain = this.plan.chain
    while (token.next < chain.length) {
      const step = chain[token.next]!
      switch (step.kind) {
        case "transform": {
          if (step.instance.external !== undefined && token.resolved === undefined) {
            this.park(step, token)
            return DONE
          }
          const r = this.runTransform(step, token)
          if (r === "stop") return DONE
          if (typeof r === "object" && "_tag" in r && r._tag === "Sleep") return r
          const moved = this.advance(r as Token, step.onSuccess)
          if (moved === undefined) return DONE
          token = moved
          break
        }
        case "gate": {
          const r = this.runGate(step, token)
          if (r === undefined) return DONE
          token = r
          break
        }
        case "aggregation": {
          try {
            this.aggregations.buffer(step, token)
          } catch (e) {
            // The token is a batch member now: the batch records its fate.
            this.queue.shift()
            throw e
          }
          return DONE
        }
      }
    }
    const sink = token.sink ?? (token.branch !== null && this.plan.sinks.has(token.branch) ? token.branch : this.plan.defaultSink)
    if (sink === undefined) throw new ProcessingCrash(`a token reached the end of the chain with no sink to go to`, "", token.rowIndex)
    this.toSink(token, token.row, sink, "COMPLETED")
    return DONE
  }

  private runTransform(step: TransformStep, token: Token): Token | "stop" | StepResult {
    const resolved = token.resolved
    const inputHash = resolved?.inputHash ?? this.trail.tokenHash(token)
    const state = resolved?.state ?? this.trail.state(token, step.nodeId, step.step, token.attempt, inputHash)
    const started = resolved?.started ?? this.trail.nanos()
    let result
    try {
      result = resolved?.result ?? step.instance.process(token.row)
    } catch (e) {
      this.trail.close(state, "failed", started, null, { message: errorText(e) })
      this.trail.records.push(state)
      this.queue.shift()
      this.trail.direct(token.tokenId, "FAILED", { error_hash: sha256Hex(errorText(e)) })
      throw new ProcessingCrash(`transform '${step.name}' failed on row ${token.rowIndex}: ${errorText(e)}`, step.name, token.rowIndex, e)
    }
    switch (result._tag) {
      case "Success": {
        const outputHash = this.trail.hashOutput(token.row, inputHash, result.row)
        this.trail.close(state, "completed", started, outputHash)
        this.trail.records.push(state)
        // the token moves on with the new row (and without the call result it may have carried)
        const moved: Token = {
          tokenId: token.tokenId,
          rowId: token.rowId,
          rowIndex: token.rowIndex,
          row: result.row,
          next: token.next,
          branch: token.branch,
          attempt: 1,
          hash: outputHash
        }
        return token.forks === undefined ? moved : { ...moved, forks: token.forks }
      }
      case "Expand": {
        const expandGroup = newGroupId()
        this.trail.close(state, "completed", started, this.trail.hashRow(result.rows))
        this.trail.records.push(state)
        this.trail.direct(token.tokenId, "EXPANDED", { expand_group_id: expandGroup })
        for (const row of result.rows) {
          const child = this.trail.newToken(token, row, token.next + 1, {
            parents: [token.tokenId],
            expandGroupId: expandGroup,
            branch: token.branch,
            forks: token.forks
          })
          this.emit(child, step.onSuccess)
        }
        return "stop"
      }
      case "Error": {
        const details = result.reason
        this.trail.close(state, "failed", started, null, details)
        this.trail.records.push(state)
        const onError = step.onError
        this.trail.records.push({
          _tag: "TransformError",
          error_id: `err_${state.state_id.slice(3)}`,
          run_id: this.trail.runId,
          token_id: token.tokenId,
          node_id: step.nodeId,
          state_id: state.state_id,
          row_hash: inputHash,
          row_json: canonicalJsonUnsafe(token.row),
          error_details_json: canonicalJsonUnsafe({ ...details, retryable: result.retryable, attempt: token.attempt }),
          destination: onError ?? "none",
          created_at: this.trail.nowIso()
        })
        if (result.retryable && token.attempt < this.retry.maxAttempts) {
          const delay = Math.min(this.retry.maxDelayMs, this.retry.initialDelayMs * Math.pow(this.retry.base, token.attempt - 1))
          this.queue[0] = { ...token, attempt: token.attempt + 1 }
          return { _tag: "Sleep", millis: delay }
        }
        if (onError === undefined) {
          this.queue.shift()
          this.trail.direct(token.tokenId, "FAILED", { error_hash: sha256Hex(canonicalJsonUnsafe(details)) })
          throw new ProcessingCrash(
            `transform '${step.name}' returned an error for row ${token.rowIndex} and has no on_error: ${canonicalJsonUnsafe(details)}`,
            step.name,
            token.rowIndex
          )
        }
        if (onError === "discard") {
          this.trail.direct(token.tokenId, "QUARANTINED", {
            error_hash: sha256Hex(canonicalJsonUnsafe(details)),
            context_json: canonicalJsonUnsafe({ reason: "transform_error", node: step.name, destination: "discard" })
          })
          return "stop"
        }
        this.trail.records.push({
          _tag: "RoutingEvent",
          event_id: `evt_${state.state_id.slice(3)}`,
          state_id: state.state_id,
          edge_id: this.edge(step.nodeId, "on_error"),
          routing_group_id: `grp_${state.state_id.slice(3)}`,
          ordinal: 0,
          mode: "divert",
          reason_json: canonicalJsonUnsafe({ on_error: onError, error: details }),
          created_at: this.trail.nowIso()
        })
        this.toSink(token, token.row, onError, "ROUTED", canonicalJsonUnsafe({ reason: "transform_error", node: step.name }))
        return "stop"
      }
    }
  }

  /** Evaluates a gate; returns the token moving on, or undefined when it left the chain. */
  private runGate(step: GateStep, token: Token): Token | undefined {
    const hash = this.trail.tokenHash(token)
    const state = this.trail.state(token, step.nodeId, step.step, 1, hash)
    const started = this.trail.nanos()
    const evaluated = evaluateExpression(step.condition, token.row)
    const fail = (message: string): never => {
      this.trail.close(state, "failed", started, null, { message })
      this.trail.records.push(state)
      this.queue.shift()
      this.trail.direct(token.tokenId, "FAILED", { error_hash: sha256Hex(message) })
      throw new ProcessingCrash(`gate '${step.name}' failed on row ${token.rowIndex}: ${message}`, step.name, token.rowIndex)
    }
    if (evaluated._tag === "Left") return fail(evaluated.left.message)
    const label = routeLabel(evaluated.right)
    const destination = step.settings.routes[label]
    const target = step.routes.get(label)
    if (destination === undefined || target === undefined) {
      return fail(`condition gave '${label}' but the gate has no route for it; routes: [${Object.keys(step.settings.routes).join(", ")}]`)
    }
    this.trail.close(state, "completed", started, hash)
    this.trail.records.push(state)
    if (target._tag === "Fork") {
      this.fork(step, token, state.state_id, label)
      return undefined
    }
    const route = this.gateRoute(step, label, destination)
    this.trail.records.push({
      _tag: "RoutingEvent",
      event_id: `evt_${state.state_id.slice(3)}`,
      state_id: state.state_id,
      edge_id: route.edgeId,
      routing_group_id: `grp_${state.state_id.slice(3)}`,
      ordinal: 0,
      mode: "move",
      reason_json: route.reasonJson,
      created_at: this.trail.nowIso()
    })
    if (target._tag === "Sink") {
      this.toSink(token, token.row, target.name, "ROUTED", route.routedJson)
      return undefined
    }
    return this.advance(token, target)
  }

  /** A fork: the parent ends FORKED, one child per branch goes to its coalesce or on down the chain. */
  private fork(step: GateStep, token: Token, stateId: string, label: string): void {
    const forkGroup = newGroupId()
    this.trail.direct(token.tokenId, "FORKED", { fork_group_id: forkGroup })
    const forks = { ...token.forks, [step.step]: token.tokenId }
    step.branches.forEach(({ branch, target }, ordinal) => {
      const child = this.trail.newToken(token, structuredClone(token.row) as Row, token.next + 1, {
        parents: [token.tokenId],
        forkGroupId: forkGroup,
        branch,
        forks
      })
      this.trail.records.push({
        _tag: "RoutingEvent",
        event_id: `evt_${child.tokenId.slice(4)}`,
        state_id: stateId,
        edge_id: this.edge(step.nodeId, `fork:${branch}`),
        routing_group_id: forkGroup,
        ordinal,
        mode: "copy",
        reason_json: canonicalJsonUnsafe({ condition: step.settings.condition, result: label, destination: "fork", branch }),
        created_at: this.trail.nowIso()
      })
      this.emit(child, target)
    })
  }
}
