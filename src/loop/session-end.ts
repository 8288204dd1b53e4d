import type { CommandExecutor } from "@effect/platform"
import { Duration, Effect, Option } from "effect"
import { Fixer } from "../services/fixer.js"
import type { TriggerConfig } from "./config.js"
import { type LifecycleBounds, type Step, transition } from "./lifecycle.js"
import {
  CommandKillReason,
  type CommandResult,
  failureText,
  nowIso,
  type ReviewOutcome,
  runCommand,
  runFix,
  type SessionEndResult,
  type StageContext,
  validationPassed
} from "./results.js"

export interface SessionEndInput {
  readonly ctx: StageContext
  readonly config: TriggerConfig
  readonly bounds: LifecycleBounds
  readonly round: number
  /**
   * Runs the code review over `base_sha..HEAD` (only called when `code_review.enabled`),
   * given this session_end's result so far (its commands' verdict, no review yet) as
   * the reviewer's evidence.
   */
  readonly codeReview: (evidence: SessionEndResult) => Effect.Effect<ReviewOutcome, never, CommandExecutor.CommandExecutor>
  /** Shown in the recorded fixer command. */
  readonly fixerCommand: string
}

export const skippedSessionEnd = (reason: string): SessionEndResult => ({
  status: "skipped",
  started_at: null,
  finished_at: null,
  commands: [],
  code_review_result: null,
  reason,
  validations: 0
})

type Body = Omit<SessionEndResult, "started_at" | "finished_at">

/**
 * session_end for one issue: its commands in order, remediation through the Fixer
 * between failed validations, then the optional code review — all under one
 * `Effect.timeout` (a command it kills is still recorded, `timed_out`). Abort/SIGINT is
 * checked between commands: the running command completes and the completed results
 * are kept. Never fails: every outcome is a SessionEndResult for the review to weigh.
 * Under failure_mode abort a `fail` or a `timeout` requests the run's abort.
 */
export const runSessionEnd = Effect.fn("loop.runSessionEnd")(function*(input: SessionEndInput) {
  const { bounds, config, ctx } = input
  const fixer = yield* Fixer
  const issueId = ctx.issueId ?? "-"
  yield* ctx.emit(`[trigger] session_end started: issue_id=${issueId}`)
  const startedAt = yield* nowIso
  const allowFail = (ref: string) => config.commands.find((c) => c.ref === ref)?.allowFail ?? false

  const body: Effect.Effect<Body, never, CommandExecutor.CommandExecutor> = Effect.gen(function*() {
    let step: Step = {
      state: { _tag: "SessionEnd", round: input.round, validation: 1 },
      action: { _tag: "RunSessionEndValidation", round: input.round, validation: 1 }
    }
    let last: ReadonlyArray<CommandResult> = []
    const interrupted = (reason: string, commands: ReadonlyArray<CommandResult>, validations: number): Body => ({
      status: "interrupted",
      commands,
      code_review_result: null,
      reason,
      validations
    })
    for (;;) {
      const action = step.action
      switch (action._tag) {
        case "RunSessionEndValidation": {
          const current: Array<CommandResult> = []
          for (const def of config.commands) {
            const abort = yield* ctx.abort.reason
            if (Option.isSome(abort)) return interrupted(abort.value, current, action.validation)
            current.push(
              yield* runCommand(ctx, "session_end", {
                ...def,
                env: { ATTEMPT: String(action.validation), MAX_ATTEMPTS: String(bounds.maxSessionEndValidations) }
              })
            )
          }
          last = current
          step = transition(bounds, step.state, { _tag: "SessionEndValidated", passed: validationPassed(current, allowFail) })
          break
        }
        case "RunFixer": {
          const abort = yield* ctx.abort.reason
          if (Option.isSome(abort)) return interrupted(abort.value, last, action.attempt)
          yield* runFix(ctx, "session_end", input.fixerCommand, (logFile) =>
            fixer.runFixer({
              issueId,
              trigger: "session_end",
              failureOutput: failureText(last),
              attempt: action.attempt,
              cwd: ctx.cwd,
              env: {
                ...ctx.env,
                STAGE: "session_end",
                ATTEMPT: String(action.attempt),
                MAX_ATTEMPTS: String(bounds.maxSessionEndValidations - 1)
              },
              logFile,
              hardKill: ctx.abort.hardKill
            }))
          step = transition(bounds, step.state, { _tag: "FixerDone" })
          break
        }
        case "FinishSessionEnd": {
          const validations = step.state._tag === "SessionEnd" ? step.state.validation : 1
          const verdict: Body = {
            status: action.passed ? "pass" : "fail",
            commands: last,
            code_review_result: null,
            reason: action.passed ? null : action.exhausted ? "max_retries_exhausted" : "commands_failed",
            validations
          }
          if (!config.codeReview) return verdict
          const abort = yield* ctx.abort.reason
          if (Option.isSome(abort)) return interrupted(abort.value, last, validations)
          const review = yield* input.codeReview({ ...verdict, started_at: startedAt, finished_at: null })
          return { ...verdict, code_review_result: review }
        }
        default:
          return yield* Effect.dieMessage(`session_end: unexpected lifecycle action ${action._tag}`)
      }
    }
  })

  const timed = config.timeoutMs === undefined
    ? Effect.map(body, Option.some)
    : Effect.timeoutOption(Effect.locally(body, CommandKillReason, "session_end_timeout"), Duration.millis(config.timeoutMs))
  const outcome = yield* timed
  const finishedAt = yield* nowIso
  const result: SessionEndResult = Option.match(outcome, {
    // Partial results are discarded on timeout: commands holds complete executions only.
    onNone: () => ({
      status: "timeout" as const,
      started_at: startedAt,
      finished_at: finishedAt,
      commands: [],
      code_review_result: null,
      reason: "session_end_timeout",
      validations: 0
    }),
    onSome: (b) => ({ ...b, started_at: startedAt, finished_at: finishedAt })
  })
  // A timeout is a failure too: under failure_mode abort it stops the run.
  if ((result.status === "fail" || result.status === "timeout") && config.failureMode === "abort") {
    yield* ctx.abort.request("run_aborted")
  }
  yield* ctx.emit(`[trigger] session_end completed: issue_id=${issueId}, result=${result.status}`)
  return result
})
