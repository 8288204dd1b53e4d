/**
 * Coalesce points: fork children of the same source row meet here and are merged
 * into one token that goes on to the coalesce's target (the next step, or a sink).
 *
 * Policies decide when a group merges: `require_all` and `best_effort` when every
 * branch arrived, `quorum` when `quorum_count` did, `first` on the first arrival.
 * A pending group whose timeout passes (on the Clock, see run.ts) or that is still
 * pending at the end of the source is resolved: `best_effort` merges what arrived,
 * `quorum` merges if the quorum is met, otherwise the group fails. Siblings arriving
 * after their group merged are recorded FAILED as late — never silently dropped.
 */
import { canonicalJsonUnsafe, sha256Hex } from "../../core/canonical.js"
import { newGroupId } from "../../core/ids.js"
import type { NodeStateRecord } from "../../services/records.js"
import type { CoalesceStep, PipelinePlan, Target } from "../build.js"
import { type Row, setField } from "../plugins/protocol.js"
import type { ScheduleCoalesceTimeout, Token } from "./tokens.js"
import type { CoalesceGroupState } from "./checkpoint-state.js"
import type { TrailBuffer } from "./trail-buffer.js"

interface Arrival {
  readonly token: Token
  readonly state: NodeStateRecord
  readonly started: bigint
}

interface PendingGroup {
  /** The fork group the siblings were created in. */
  readonly key: string
  readonly generation: number
  readonly startedMs: number
  readonly arrived: Map<string, Arrival>
}

export class Coalesces {
  private readonly pending = new Map<number, Map<string, PendingGroup>>()
  /** Branches still expected after a group merged early (quorum, first): arrivals there are late. */
  private readonly expectedLate = new Map<number, Map<string, Set<string>>>()
  private generation = 0

  constructor(
    private readonly plan: PipelinePlan,
    private readonly trail: TrailBuffer,
    /** Sends a merged token on down the chain (the processor's queue). */
    private readonly enqueue: (token: Token, target: Target) => void,
    private readonly scheduleTimeout: ScheduleCoalesceTimeout
  ) {}

  /** The groups waiting for siblings, for a checkpoint. */
  snapshot(): Array<CoalesceGroupState> {
    const out: Array<CoalesceGroupState> = []
    for (const step of this.plan.coalesces) {
      const groups = this.pending.get(step.index)
      if (groups === undefined) continue
      for (const g of groups.values()) {
        if (g.arrived.size === 0) continue
        out.push({
          index: step.index,
          nodeId: step.nodeId,
          key: g.key,
          startedMs: g.startedMs,
          arrived: Array.from(g.arrived, ([branch, a]) => ({ branch, token: a.token }))
        })
      }
    }
    return out
  }

  /** Reopens the pending groups of a checkpoint (resume), each arrival with a fresh node state. */
  restore(states: ReadonlyArray<CoalesceGroupState>): void {
    for (const s of states) {
      const step = this.plan.coalesces.find((c) => c.index === s.index && c.nodeId === s.nodeId)
      if (step === undefined) throw new Error(`checkpoint names coalesce ${s.index} (${s.nodeId}), which this pipeline does not have`)
      let groups = this.pending.get(step.index)
      if (groups === undefined) {
        groups = new Map()
        this.pending.set(step.index, groups)
      }
      const group: PendingGroup = { key: s.key, generation: ++this.generation, startedMs: s.startedMs, arrived: new Map() }
      for (const { branch, token } of s.arrived) {
        const state = this.trail.state(token, step.nodeId, step.afterStep, 1, this.trail.tokenHash(token))
        group.arrived.set(branch, { token, state, started: this.trail.nanos() })
      }
      groups.set(s.key, group)
      const timeout = step.settings.timeout_seconds
      if (timeout !== undefined) this.scheduleTimeout(step, s.key, group.generation, group.startedMs + timeout * 1000)
    }
  }

  pendingCount(): number {
    let n = 0
    for (const groups of this.pending.values()) for (const g of groups.values()) n += g.arrived.size
    return n
  }

  /**
   * A fork child arrives at its coalesce point. Siblings are the descendants of the
   * token forked at the coalesce's first gate, so copies of one source row (after a
   * deaggregation) each merge with their own siblings.
   */
  arrive(step: CoalesceStep, token: Token): void {
    const forkGroup = token.forks?.[step.keyStep] ?? token.rowId
    const trail = this.trail
    const branch = token.branch ?? ""
    const state = trail.state(token, step.nodeId, step.afterStep, 1, trail.tokenHash(token))
    const started = trail.nanos()
    const late = this.expectedLate.get(step.index)?.get(forkGroup)
    if (late !== undefined && late.has(branch)) {
      late.delete(branch)
      if (late.size === 0) this.expectedLate.get(step.index)!.delete(forkGroup)
      trail.close(state, "failed", started, null, { reason: "late_sibling", coalesce: step.name, branch })
      trail.records.push(state)
      trail.direct(token.tokenId, "FAILED", {
        context_json: canonicalJsonUnsafe({ reason: "late_sibling", coalesce: step.name, branch })
      })
      return
    }
    let groups = this.pending.get(step.index)
    if (groups === undefined) {
      groups = new Map()
      this.pending.set(step.index, groups)
    }
    let group = groups.get(forkGroup)
    if (group === undefined) {
      group = { key: forkGroup, generation: ++this.generation, startedMs: trail.clock.unsafeCurrentTimeMillis(), arrived: new Map() }
      groups.set(forkGroup, group)
      const timeout = step.settings.timeout_seconds
      if (timeout !== undefined) this.scheduleTimeout(step, forkGroup, group.generation, group.startedMs + timeout * 1000)
    }
    if (group.arrived.has(branch)) {
      // A fork creates each branch once, so this cannot happen; should it ever, the
      // arrival is recorded rather than overwriting (and losing) its sibling.
      const context = { reason: "duplicate_branch_for_row", coalesce: step.name, branch }
      trail.close(state, "failed", started, null, context)
      trail.records.push(state)
      trail.direct(token.tokenId, "FAILED", { context_json: canonicalJsonUnsafe(context) })
      return
    }
    group.arrived.set(branch, { token, state, started })
    const s = step.settings
    const policy = s.policy ?? "require_all"
    const ready = policy === "first"
      ? true
      : policy === "quorum"
      ? group.arrived.size >= (s.quorum_count ?? step.branches.length)
      : group.arrived.size >= step.branches.length
    if (ready) this.merge(step, group, `${policy}: ${group.arrived.size} of ${step.branches.length} branches arrived`)
  }

  /**
   * The processor's queue ran empty: every fork has delivered all its children, so no
   * sibling can arrive late any more and nothing needs remembering for that.
   */
  unitDone(): void {
    if (this.expectedLate.size > 0) this.expectedLate.clear()
  }

  /** From the timer fiber: resolves the group if it is still pending. */
  resolveIfDue(step: CoalesceStep, key: string, generation: number): boolean {
    const group = this.pending.get(step.index)?.get(key)
    if (group === undefined || group.generation !== generation) return false
    this.resolve(step, group, "timeout")
    return true
  }

  /** End of source: resolves every pending group. */
  resolveAll(): void {
    for (const step of this.plan.coalesces) {
      for (const group of Array.from(this.pending.get(step.index)?.values() ?? [])) this.resolve(step, group, "end_of_source")
    }
    this.expectedLate.clear()
  }

  /** The run is stopping: pending arrivals end FAILED. */
  failAll(reason: string): void {
    for (const step of this.plan.coalesces) {
      for (const group of Array.from(this.pending.get(step.index)?.values() ?? [])) this.fail(step, group, reason)
    }
  }

  private resolve(step: CoalesceStep, group: PendingGroup, why: "timeout" | "end_of_source"): void {
    const s = step.settings
    const policy = s.policy ?? "require_all"
    if (policy === "best_effort" || policy === "first") {
      return this.merge(step, group, `${policy} at ${why}: ${group.arrived.size} of ${step.branches.length} branches arrived`)
    }
    if (policy === "quorum" && group.arrived.size >= (s.quorum_count ?? step.branches.length)) {
      return this.merge(step, group, `quorum met at ${why}`)
    }
    this.fail(step, group, policy === "quorum" ? "quorum_not_met" : "incomplete_branches")
  }

  /** Branches of `group` that have not arrived will be late. */
  private expectLate(step: CoalesceStep, group: PendingGroup): void {
    const missing = step.branches.filter((b) => !group.arrived.has(b))
    if (missing.length === 0) return
    let late = this.expectedLate.get(step.index)
    if (late === undefined) {
      late = new Map()
      this.expectedLate.set(step.index, late)
    }
    late.set(group.key, new Set(missing))
  }

  private take(step: CoalesceStep, group: PendingGroup): void {
    this.pending.get(step.index)?.delete(group.key)
  }

  private fail(step: CoalesceStep, group: PendingGroup, reason: string): void {
    const trail = this.trail
    this.take(step, group)
    const context = canonicalJsonUnsafe({ reason, coalesce: step.name, group: group.key, arrived: Array.from(group.arrived.keys()) })
    for (const a of group.arrived.values()) {
      trail.close(a.state, "failed", a.started, null, { reason, coalesce: step.name })
      trail.records.push(a.state)
      trail.direct(a.token.tokenId, "FAILED", { context_json: context, error_hash: sha256Hex(context) })
    }
    trail.countCoalesceFailure()
  }

  private merge(step: CoalesceStep, group: PendingGroup, reason: string): void {
    const trail = this.trail
    const s = step.settings
    this.take(step, group)
    const arrivedInOrder = step.branches.filter((b) => group.arrived.has(b)).map((b) => [b, group.arrived.get(b)!] as const)
    const mergeMode = s.merge ?? "union"
    // The group is resolved either way (merged, or failed for a missing select_branch):
    // a branch arriving from now on is a late sibling, never the start of a new group.
    this.expectLate(step, group)
    let merged: Row
    if (mergeMode === "select") {
      const selected = group.arrived.get(s.select_branch ?? "")
      if (selected === undefined) return this.fail(step, group, "select_branch_missing")
      merged = structuredClone(selected.token.row) as Row
    } else if (mergeMode === "nested") {
      const out: Record<string, unknown> = {}
      for (const [b, a] of arrivedInOrder) setField(out, b, a.token.row)
      merged = out
    } else {
      const out: Record<string, unknown> = {}
      for (const [, a] of arrivedInOrder) for (const [k, v] of Object.entries(a.token.row)) setField(out, k, v)
      merged = out
    }
    const joinGroup = newGroupId()
    const outputHash = trail.hashRow(merged)
    for (const [, a] of arrivedInOrder) {
      trail.close(a.state, "completed", a.started, outputHash)
      trail.records.push(a.state)
      trail.direct(a.token.tokenId, "COALESCED", {
        join_group_id: joinGroup,
        context_json: canonicalJsonUnsafe({ coalesce: step.name, reason })
      })
    }
    const first = arrivedInOrder[0]![1].token
    this.enqueue(
      trail.newToken(first, merged, step.afterStep, {
        parents: arrivedInOrder.map(([, a]) => a.token.tokenId),
        joinGroupId: joinGroup,
        forks: first.forks
      }),
      step.onSuccess
    )
  }
}
