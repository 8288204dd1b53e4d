/**
 * The per-issue lifecycle as a pure state machine: no I/O, no clock. An interpreter
 * (the coordinator, and session-end for its own states) performs the effect a state
 * asks for and feeds the outcome back as an event.
 *
 *   implementing ──▶ gating ──(fail, retries left)──▶ implementing (with feedback)
 *                      │ pass
 *                      ▼
 *               session_end ⇄ session_end_remediating
 *                      │ finished (any status; also when the run began draining meanwhile)
 *                      ▼
 *                  reviewing ──(blocked, rounds left)──▶ implementing (with findings)
 *                      │        (draining: any outcome ends the issue interrupted)
 *                      │ approved
 *                      ▼
 *                  finalizing ──▶ done
 */

export type IssueStatus = "success" | "failed" | "interrupted" | "skipped"
export type SessionEndStatus = "pass" | "fail" | "timeout" | "interrupted" | "skipped"
export type Resolution = "no_change" | "already_complete" | "obsolete"

/** Bounds taken from the config. Every count below is 1-based. */
export interface LifecycleBounds {
  /** Implementer runs per review round: `1 + gate.max_retries`. */
  readonly maxGateAttempts: number
  /** Whether session_end is configured at all. */
  readonly sessionEnd: boolean
  /** Validations of one session_end: `1 + max_retries` with remediate, else 1. */
  readonly maxSessionEndValidations: number
  readonly remediate: boolean
  readonly reviewer: boolean
  /** Review rounds: `1 + reviewer.max_retries`. */
  readonly maxReviewRounds: number
}

export type State =
  | { readonly _tag: "Pending" }
  | { readonly _tag: "Implementing"; readonly round: number; readonly attempt: number }
  | { readonly _tag: "Gating"; readonly round: number; readonly attempt: number }
  | { readonly _tag: "SessionEnd"; readonly round: number; readonly validation: number }
  | { readonly _tag: "SessionEndRemediating"; readonly round: number; readonly validation: number }
  /**
   * `drain` is the abort reason when the run began draining while session_end ran:
   * the review still runs (its evidence is recorded), then the issue ends interrupted.
   */
  | { readonly _tag: "Reviewing"; readonly round: number; readonly parseRetry: boolean; readonly drain: string | null }
  | { readonly _tag: "Finalizing"; readonly status: IssueStatus; readonly reason: string | null }
  | { readonly _tag: "Done"; readonly status: IssueStatus; readonly reason: string | null }

export type Event =
  | { readonly _tag: "Start" }
  | { readonly _tag: "ImplementerDone"; readonly resolution: Resolution | null }
  | { readonly _tag: "GateResult"; readonly passed: boolean; readonly noProgress: boolean }
  /** session_end did not run (not configured). */
  | { readonly _tag: "SessionEndSkipped" }
  /** One validation of session_end (all its commands) finished. */
  | { readonly _tag: "SessionEndValidated"; readonly passed: boolean }
  | { readonly _tag: "FixerDone" }
  /**
   * session_end as a whole ended (timeout and interruption end it early). `abortRun`:
   * this issue's failure aborts the run (failure_mode abort); `drain`: the run's abort
   * reason, when the run was aborted (by another issue, or Ctrl-C) while it ran.
   */
  | {
    readonly _tag: "SessionEndFinished"
    readonly status: SessionEndStatus
    readonly abortRun?: boolean
    readonly drain?: string
  }
  | { readonly _tag: "ReviewResult"; readonly outcome: "approved" | "blocked" | "parse_error" }
  | { readonly _tag: "Finalized" }
  /**
   * Run abort or SIGINT, seen before the state's action was performed. An issue whose
   * first implementer never ran did no work: it ends `skipped`, like a pending one.
   */
  | { readonly _tag: "Aborted"; readonly reason: string }

/** What the interpreter must do on entering a state. */
export type Action =
  | { readonly _tag: "RunImplementer"; readonly round: number; readonly attempt: number; readonly feedback: "gate" | "review" | null }
  | { readonly _tag: "RunGate"; readonly round: number; readonly attempt: number }
  | { readonly _tag: "SkipSessionEnd"; readonly reason: "not_configured" }
  | { readonly _tag: "RunSessionEndValidation"; readonly round: number; readonly validation: number }
  | { readonly _tag: "RunFixer"; readonly round: number; readonly attempt: number }
  | { readonly _tag: "FinishSessionEnd"; readonly passed: boolean; readonly exhausted: boolean }
  /** `drain`: the review of a draining run (the interpreter runs it despite the abort). */
  | { readonly _tag: "RunReviewer"; readonly round: number; readonly rerun: boolean; readonly drain: boolean }
  | { readonly _tag: "RunFinalize"; readonly status: IssueStatus; readonly reason: string | null }
  | { readonly _tag: "None" }

export interface Step {
  readonly state: State
  readonly action: Action
}

export const initial: State = { _tag: "Pending" }

export const isTerminal = (state: State): boolean => state._tag === "Done"

const finalize = (status: IssueStatus, reason: string | null): Step => ({
  state: { _tag: "Finalizing", status, reason },
  action: { _tag: "RunFinalize", status, reason }
})

const implement = (round: number, attempt: number, feedback: "gate" | "review" | null): Step => ({
  state: { _tag: "Implementing", round, attempt },
  action: { _tag: "RunImplementer", round, attempt, feedback }
})

const review = (round: number, parseRetry: boolean, drain: string | null = null): Step => ({
  state: { _tag: "Reviewing", round, parseRetry, drain },
  action: { _tag: "RunReviewer", round, rerun: parseRetry, drain: drain !== null }
})

/**
 * After session_end: a failure (or timeout) under failure_mode abort fails the issue
 * unreviewed; a run that began draining meanwhile still gets this issue's review (R10);
 * otherwise the review, or success without a reviewer.
 */
const afterSessionEnd = (
  bounds: LifecycleBounds,
  round: number,
  event: Extract<Event, { _tag: "SessionEndFinished" }>
): Step => {
  if (event.abortRun === true) {
    return finalize("failed", event.status === "timeout" ? "session_end_timeout" : "session_end_failed")
  }
  if (event.drain !== undefined) return bounds.reviewer ? review(round, false, event.drain) : finalize("interrupted", event.drain)
  return bounds.reviewer ? review(round, false) : finalize("success", null)
}

/** An event that makes no sense in a state leaves it unchanged (the interpreter's bug, not the user's). */
const stay = (state: State): Step => ({ state, action: { _tag: "None" } })

export const transition = (bounds: LifecycleBounds, state: State, event: Event): Step => {
  if (state._tag === "Done") return stay(state)
  if (event._tag === "Aborted") {
    if (state._tag === "Finalizing") return finalize(state.status, state.reason)
    if (state._tag === "Pending") return finalize("skipped", event.reason)
    if (state._tag === "Implementing" && state.round === 1 && state.attempt === 1) return finalize("skipped", event.reason)
    return finalize("interrupted", event.reason)
  }
  switch (state._tag) {
    case "Pending":
      return event._tag === "Start" ? implement(1, 1, null) : stay(state)
    case "Implementing":
      if (event._tag !== "ImplementerDone") return stay(state)
      if (event.resolution !== null) return finalize("success", `resolution:${event.resolution}`)
      return {
        state: { _tag: "Gating", round: state.round, attempt: state.attempt },
        action: { _tag: "RunGate", round: state.round, attempt: state.attempt }
      }
    case "Gating":
      if (event._tag !== "GateResult") return stay(state)
      if (event.passed) {
        if (!bounds.sessionEnd) {
          return {
            state: { _tag: "SessionEnd", round: state.round, validation: 0 },
            action: { _tag: "SkipSessionEnd", reason: "not_configured" }
          }
        }
        return {
          state: { _tag: "SessionEnd", round: state.round, validation: 1 },
          action: { _tag: "RunSessionEndValidation", round: state.round, validation: 1 }
        }
      }
      if (event.noProgress) return finalize("failed", "gate_no_progress")
      if (state.attempt < bounds.maxGateAttempts) return implement(state.round, state.attempt + 1, "gate")
      return finalize("failed", "gate_failed")
    case "SessionEnd":
      switch (event._tag) {
        case "SessionEndSkipped":
          return bounds.reviewer ? review(state.round, false) : finalize("success", null)
        case "SessionEndValidated":
          if (event.passed) {
            return { state, action: { _tag: "FinishSessionEnd", passed: true, exhausted: false } }
          }
          if (bounds.remediate && state.validation < bounds.maxSessionEndValidations) {
            return {
              state: { _tag: "SessionEndRemediating", round: state.round, validation: state.validation },
              action: { _tag: "RunFixer", round: state.round, attempt: state.validation }
            }
          }
          return { state, action: { _tag: "FinishSessionEnd", passed: false, exhausted: bounds.remediate } }
        case "SessionEndFinished":
          return afterSessionEnd(bounds, state.round, event)
        default:
          return stay(state)
      }
    case "SessionEndRemediating":
      if (event._tag === "FixerDone") {
        const validation = state.validation + 1
        return {
          state: { _tag: "SessionEnd", round: state.round, validation },
          action: { _tag: "RunSessionEndValidation", round: state.round, validation }
        }
      }
      if (event._tag === "SessionEndFinished") return afterSessionEnd(bounds, state.round, event)
      return stay(state)
    case "Reviewing":
      if (event._tag !== "ReviewResult") return stay(state)
      if (state.drain !== null) return finalize("interrupted", state.drain)
      switch (event.outcome) {
        case "approved":
          return finalize("success", null)
        case "parse_error":
          return state.parseRetry ? finalize("failed", "review_parse_error") : review(state.round, true)
        case "blocked":
          return state.round < bounds.maxReviewRounds
            ? implement(state.round + 1, 1, "review")
            : finalize("failed", "review_blocked")
      }
    case "Finalizing":
      return event._tag === "Finalized"
        ? { state: { _tag: "Done", status: state.status, reason: state.reason }, action: { _tag: "None" } }
        : stay(state)
  }
}

export const boundsFrom = (config: {
  readonly gate: { readonly maxRetries: number }
  readonly sessionEnd: { readonly failureMode: string; readonly maxRetries: number } | undefined
  readonly reviewer: { readonly maxRetries: number } | undefined
}): LifecycleBounds => ({
  maxGateAttempts: 1 + config.gate.maxRetries,
  sessionEnd: config.sessionEnd !== undefined,
  remediate: config.sessionEnd?.failureMode === "remediate",
  maxSessionEndValidations: config.sessionEnd?.failureMode === "remediate" ? 1 + config.sessionEnd.maxRetries : 1,
  reviewer: config.reviewer !== undefined,
  maxReviewRounds: 1 + (config.reviewer?.maxRetries ?? 0)
})
