import * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Clock, DateTime, Effect } from "effect"
import * as NodePath from "node:path"
import type { RunAbortService } from "./abort.js"
import { supervise } from "./supervisor.js"

/** One finished command, as recorded and as shown in `--json`. */
export interface CommandResult {
  readonly ref: string
  readonly command: string
  readonly passed: boolean
  readonly exit_code: number | null
  readonly timed_out: boolean
  readonly duration_ms: number
  readonly output_tail: string
  readonly started_at: string
  readonly finished_at: string
  readonly log_file: string | null
  /** stdout alone, kept only for commands whose output is data. */
  readonly stdout?: string
}

export interface Finding {
  readonly file: string | null
  readonly line_start: number | null
  readonly line_end: number | null
  readonly priority: number
  readonly title: string
  readonly body: string
}

/** A reviewer's parsed answer. */
export interface ReviewOutcome {
  readonly status: "approved" | "blocked" | "parse_error"
  readonly verdict: string | null
  readonly findings: ReadonlyArray<Finding>
  /** Findings at or above the threshold. */
  readonly blocking: ReadonlyArray<Finding>
  readonly error: string | null
  readonly command: CommandResult | null
}

export interface SessionEndResult {
  readonly status: "pass" | "fail" | "timeout" | "interrupted" | "skipped"
  readonly started_at: string | null
  readonly finished_at: string | null
  readonly commands: ReadonlyArray<CommandResult>
  readonly code_review_result: ReviewOutcome | null
  readonly reason: string | null
  /** Validations run (1 + fixer runs). */
  readonly validations: number
}

export interface RunEndResult {
  readonly status: "pass" | "fail" | "skipped"
  readonly reason: string | null
  readonly started_at: string | null
  readonly finished_at: string | null
  readonly commands: ReadonlyArray<CommandResult>
  readonly code_review_result: ReviewOutcome | null
  readonly validations: number
}

/** Everything a stage needs to run commands for one issue (or for the run, issueId null). */
export interface StageContext {
  readonly runId: string
  readonly issueId: string | null
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
  readonly logDir: string
  readonly graceMs: number
  readonly abort: RunAbortService
  readonly emit: (line: string) => Effect.Effect<void>
  /** Called as each command ends, so its result is persisted before the next starts. */
  readonly onCommand: (stage: string, result: CommandResult) => Effect.Effect<void>
  /** Unique log-file names across the stage context. */
  readonly nextLogIndex: () => number
}

export const nowIso = Effect.map(Clock.currentTimeMillis, (ms) => DateTime.formatIso(DateTime.unsafeMake(ms)))

const safeName = (ref: string) => ref.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 60)

/**
 * Runs one command under the supervisor. A command that cannot even start is a
 * failed command (exit_code null), not a failed run.
 */
export const runCommand = (
  ctx: StageContext,
  stage: string,
  spec: {
    readonly ref: string
    readonly command: string
    readonly timeoutMs: number | undefined
    readonly allowFail?: boolean
    readonly env?: Readonly<Record<string, string>>
    readonly keepStdout?: boolean
  }
): Effect.Effect<CommandResult, never, CommandExecutor.CommandExecutor> =>
  Effect.gen(function*() {
    const startedAt = yield* nowIso
    const logFile = NodePath.join(ctx.logDir, `${String(ctx.nextLogIndex()).padStart(3, "0")}-${stage}-${safeName(spec.ref)}.log`)
    const outcome = yield* supervise({
      command: spec.command,
      cwd: ctx.cwd,
      env: { ...ctx.env, ...spec.env },
      timeoutMs: spec.timeoutMs,
      graceMs: ctx.graceMs,
      logFile,
      tailBytes: spec.keepStdout === true ? 1 << 20 : 8192,
      hardKill: ctx.abort.hardKill,
      label: { runId: ctx.runId, issueId: ctx.issueId, stage, ref: spec.ref }
    }).pipe(Effect.either)
    const finishedAt = yield* nowIso
    const result: CommandResult = outcome._tag === "Right"
      ? {
        ref: spec.ref,
        command: spec.command,
        passed: outcome.right.exitCode === 0,
        exit_code: outcome.right.exitCode,
        timed_out: outcome.right.timedOut,
        duration_ms: outcome.right.durationMs,
        output_tail: spec.keepStdout === true ? outcome.right.outputTail.slice(-8192) : outcome.right.outputTail,
        started_at: startedAt,
        finished_at: finishedAt,
        log_file: logFile,
        ...(spec.keepStdout === true ? { stdout: outcome.right.stdoutTail } : {})
      }
      : {
        ref: spec.ref,
        command: spec.command,
        passed: false,
        exit_code: null,
        timed_out: false,
        duration_ms: 0,
        output_tail: outcome.left.message,
        started_at: startedAt,
        finished_at: finishedAt,
        log_file: null
      }
    yield* ctx.onCommand(stage, result)
    return result
  })

/** Whether a validation (a list of command results) passes, honouring allow_fail. */
export const validationPassed = (
  results: ReadonlyArray<CommandResult>,
  allowFail: (ref: string) => boolean
): boolean => results.every((r) => r.passed || allowFail(r.ref))

/** The text handed to a fixer: the failing commands and their output. */
export const failureText = (results: ReadonlyArray<CommandResult>): string =>
  results
    .filter((r) => !r.passed)
    .map((r) =>
      `## ${r.ref} (${r.timed_out ? "timed out" : `exit ${r.exit_code ?? "signal"}`})\n$ ${r.command}\n${r.output_tail}\n`
    )
    .join("\n")

/** Runs the Fixer and records its run as a `fixer` command of the stage; a fixer failure is logged, not fatal. */
export const runFix = <E extends { readonly reason: string; readonly message: string }>(
  ctx: StageContext,
  stage: string,
  command: string,
  fix: Effect.Effect<{ readonly exitCode: number; readonly durationMs: number; readonly outputTail: string }, E>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const startedAt = yield* nowIso
    const started = yield* Clock.currentTimeMillis
    const outcome = yield* Effect.either(fix)
    const finishedAt = yield* nowIso
    const elapsed = (yield* Clock.currentTimeMillis) - started
    const result: CommandResult = outcome._tag === "Right"
      ? {
        ref: "fixer",
        command,
        passed: outcome.right.exitCode === 0,
        exit_code: outcome.right.exitCode,
        timed_out: false,
        duration_ms: outcome.right.durationMs,
        output_tail: outcome.right.outputTail,
        started_at: startedAt,
        finished_at: finishedAt,
        log_file: null
      }
      : {
        ref: "fixer",
        command,
        passed: false,
        exit_code: null,
        timed_out: outcome.left.reason === "Timeout",
        duration_ms: elapsed,
        output_tail: outcome.left.message,
        started_at: startedAt,
        finished_at: finishedAt,
        log_file: null
      }
    if (outcome._tag === "Left") {
      yield* ctx.emit(`[fixer] failed: issue_id=${ctx.issueId ?? "-"}, reason=${outcome.left.reason}`)
    }
    yield* ctx.onCommand(stage, result)
  })
