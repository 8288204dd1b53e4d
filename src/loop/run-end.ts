import type { CommandExecutor } from "@effect/platform"
import { Duration, Effect, Option } from "effect"
import { Fixer } from "../services/fixer.js"
import type { FireOn, RunEndConfig } from "./config.js"
import {
  CommandKillReason,
  type CommandResult,
  failureText,
  nowIso,
  type ReviewOutcome,
  runCommand,
  runFix,
  type RunEndResult,
  type StageContext,
  validationPassed
} from "./results.js"

/** "Any match": success → some issue succeeded; failure → some failed; both → any finished. */
export const fireOnMet = (fireOn: FireOn, successCount: number, failureCount: number): boolean => {
  switch (fireOn) {
    case "success":
      return successCount > 0
    case "failure":
      return failureCount > 0
    case "both":
      return successCount + failureCount > 0
  }
}

export interface RunEndInput {
  readonly ctx: StageContext
  readonly config: RunEndConfig | undefined
  readonly successCount: number
  readonly failureCount: number
  readonly totalCount: number
  /** Set when the run was aborted (failure_mode abort, SIGINT): run_end is skipped. */
  readonly aborted: Option.Option<string>
  readonly codeReview: Effect.Effect<ReviewOutcome, never, CommandExecutor.CommandExecutor>
  readonly fixerCommand: string
}

const skipped = (reason: string, commands: ReadonlyArray<CommandResult> = []): RunEndResult => ({
  status: "skipped",
  reason,
  started_at: null,
  finished_at: null,
  commands,
  code_review_result: null,
  validations: 0
})

/**
 * The single run-level stage. Commands (possibly none: a review-only run_end) with
 * remediation between failed validations, then the code review, which runs unless the
 * commands failed under `failure_mode: abort` (R12: an exhausted remediate is reviewed).
 */
export const runRunEnd = Effect.fn("loop.runRunEnd")(function*(input: RunEndInput) {
  const { config, ctx } = input
  const skip = (reason: string) =>
    Effect.as(ctx.emit(`[trigger] run_end skipped: reason=${reason}`), skipped(reason))
  if (Option.isSome(input.aborted)) return yield* skip(input.aborted.value)
  if (config === undefined) return yield* skip("not_configured")
  if (!fireOnMet(config.fireOn, input.successCount, input.failureCount)) return yield* skip("fire_on_not_met")

  const fixer = yield* Fixer
  yield* ctx.emit(`[trigger] run_end started: success_count=${input.successCount}, total_count=${input.totalCount}`)
  const startedAt = yield* nowIso
  const maxValidations = config.failureMode === "remediate" ? 1 + config.maxRetries : 1
  const allowFail = (ref: string) => config.commands.find((c) => c.ref === ref)?.allowFail ?? false

  type Body = Omit<RunEndResult, "started_at" | "finished_at">
  const body: Effect.Effect<Body, never, CommandExecutor.CommandExecutor> = Effect.gen(function*() {
    let last: Array<CommandResult> = []
    let passed = false
    let validation = 0
    while (validation < maxValidations) {
      validation++
      if (validation > 1) {
        yield* runFix(ctx, "run_end", input.fixerCommand, (logFile) =>
          fixer.runFixer({
            issueId: "run",
            trigger: "run_end",
            failureOutput: failureText(last),
            attempt: validation - 1,
            cwd: ctx.cwd,
            env: { ...ctx.env, STAGE: "run_end", ATTEMPT: String(validation - 1), MAX_ATTEMPTS: String(maxValidations - 1) },
            logFile,
            hardKill: ctx.abort.hardKill
          }))
      }
      const current: Array<CommandResult> = []
      for (const def of config.commands) {
        const abort = yield* ctx.abort.reason
        if (Option.isSome(abort)) return { ...skipped(abort.value, current), validations: validation }
        current.push(
          yield* runCommand(ctx, "run_end", {
            ...def,
            env: { ATTEMPT: String(validation), MAX_ATTEMPTS: String(maxValidations) }
          })
        )
      }
      // A drain (or a hard kill) during the last command: nothing more runs, not even the review.
      const drained = yield* ctx.abort.reason
      if (Option.isSome(drained)) return { ...skipped(drained.value, current), validations: validation }
      last = current
      passed = validationPassed(current, allowFail)
      if (passed) break
    }
    // R12: only failure_mode abort gates the review on the commands; continue and an
    // exhausted remediate still review the run's work.
    let review: ReviewOutcome | null = null
    if (config.codeReview && (passed || config.failureMode !== "abort")) review = yield* input.codeReview
    const blocked = review !== null && review.status !== "approved"
    const reason = !passed
      ? config.failureMode === "remediate" ? "max_retries_exhausted" : "commands_failed"
      : blocked
      ? review!.status === "blocked" ? "code_review_blocked" : "code_review_parse_error"
      : null
    return {
      status: passed && !blocked ? "pass" : "fail",
      reason,
      commands: last,
      code_review_result: review,
      validations: validation
    }
  })

  const timed = config.timeoutMs === undefined
    ? Effect.map(body, Option.some)
    : Effect.timeoutOption(Effect.locally(body, CommandKillReason, "run_end_timeout"), Duration.millis(config.timeoutMs))
  const outcome = yield* timed
  const finishedAt = yield* nowIso
  const result: RunEndResult = Option.match(outcome, {
    onNone: () => ({
      status: "fail" as const,
      reason: "run_end_timeout",
      started_at: startedAt,
      finished_at: finishedAt,
      commands: [],
      code_review_result: null,
      validations: 0
    }),
    onSome: (b) => ({ ...b, started_at: startedAt, finished_at: finishedAt })
  })
  yield* ctx.emit(
    result.status === "skipped"
      ? `[trigger] run_end skipped: reason=${result.reason}`
      : `[trigger] run_end completed: result=${result.status}`
  )
  return result
})
