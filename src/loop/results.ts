import * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Clock, DateTime, Effect, Exit, FiberRef } from "effect"
import * as NodePath from "node:path"
import type { RunAbortService } from "./abort.js"
import type { FixerError, FixResult } from "../services/fixer.js"
import { supervise } from "./supervisor.js"
import { fileTail } from "../core/file-tail.js"

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
 * Why a command interrupted from outside was killed, as its `command_results` row
 * says: a stage sets it around the part of its work its own timeout bounds
 * (`Effect.locally(CommandKillReason, "session_end_timeout")`). A hard kill overrides it.
 */
export const CommandKillReason: FiberRef.FiberRef<string> = FiberRef.unsafeMake("interrupted")

/** Timeout reasons: the killed command is recorded `timed_out`. */
const isTimeout = (reason: string) => reason.endsWith("_timeout")

/** The last bytes of a log file, for the record of a command that was killed before it ended. */
const logTail = (file: string | null, bytes = 8192): string => fileTail(file, bytes)

interface Finished {
  readonly at: string
  readonly ms: number
}

interface Killed {
  readonly _tag: "Killed"
  readonly reason: string
}
const hardKilled: Killed = { _tag: "Killed", reason: "killed" }

/**
 * Runs `body` (one process) so that its end is always recorded: it ends normally,
 * it is killed by a hard kill (raced here, so that commands outside an issue —
 * run_end's — die at once too), or the calling fiber is interrupted (a stage timeout,
 * the scheduler's hard kill). In the last two cases the row says `[killed: <reason>]`
 * (`killed` for a hard kill, the CommandKillReason for a stage timeout), and the
 * interruption is passed on once the row is written.
 */
const recordedRun = <A, E, R>(
  ctx: StageContext,
  stage: string,
  body: Effect.Effect<A, E, R>,
  toResult: (outcome: Exit.Exit<A, E> | Killed, finished: Finished) => CommandResult
): Effect.Effect<CommandResult, never, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const raced = Effect.raceFirst(
        Effect.exit(body),
        Effect.as(ctx.abort.awaitHardKill, hardKilled)
      )
      const exit = yield* Effect.exit(restore(raced))
      const finished: Finished = { at: yield* nowIso, ms: yield* Clock.currentTimeMillis }
      let outcome: Exit.Exit<A, E> | Killed
      if (Exit.isSuccess(exit)) {
        outcome = exit.value
      } else {
        const reason = !Exit.isInterrupted(exit)
          ? "error"
          : (yield* ctx.abort.hardKill)
          ? "killed"
          : yield* FiberRef.get(CommandKillReason)
        outcome = { _tag: "Killed", reason }
      }
      const result = toResult(outcome, finished)
      if (Exit.isSuccess(exit)) {
        yield* ctx.onCommand(stage, result)
        return result
      }
      // The fiber is going down: the row is written on a best-effort basis, then the interruption goes on.
      yield* ctx.onCommand(stage, result).pipe(Effect.catchAllCause(() => Effect.void))
      return yield* Effect.failCause(exit.cause)
    })
  )

const killedResult = (
  spec: { readonly ref: string; readonly command: string },
  killed: Killed,
  started: Finished,
  finished: Finished,
  logFile: string | null
): CommandResult => {
  const tail = logTail(logFile)
  return {
    ref: spec.ref,
    command: spec.command,
    passed: false,
    exit_code: null,
    timed_out: isTimeout(killed.reason),
    duration_ms: finished.ms - started.ms,
    output_tail: `${tail}${tail === "" || tail.endsWith("\n") ? "" : "\n"}[killed: ${killed.reason}]`,
    started_at: started.at,
    finished_at: finished.at,
    log_file: logFile
  }
}

/**
 * Runs one command under the supervisor. A command that cannot even start is a
 * failed command (exit_code null), not a failed run. Every command gets `STAGE`.
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
    const startedMs = yield* Clock.currentTimeMillis
    const logFile = NodePath.join(ctx.logDir, `${String(ctx.nextLogIndex()).padStart(3, "0")}-${stage}-${safeName(spec.ref)}.log`)
    const run = supervise({
      command: spec.command,
      cwd: ctx.cwd,
      env: { ...ctx.env, STAGE: stage, ...spec.env },
      timeoutMs: spec.timeoutMs,
      graceMs: ctx.graceMs,
      logFile,
      tailBytes: spec.keepStdout === true ? 1 << 20 : 8192,
      hardKill: ctx.abort.hardKill,
      label: { runId: ctx.runId, issueId: ctx.issueId, stage, ref: spec.ref }
    }).pipe(Effect.either)
    return yield* recordedRun(ctx, stage, run, (outcome, finished): CommandResult => {
      const finishedAt = finished.at
      if (outcome._tag === "Killed") return killedResult(spec, outcome, { at: startedAt, ms: startedMs }, finished, logFile)
      // `run` cannot fail (Effect.either): a failed Exit here would be a defect, already passed on as a cause.
      const either = Exit.isSuccess(outcome) ? outcome.value : undefined
      if (either !== undefined && either._tag === "Right") {
        const r = either.right
        return {
          ref: spec.ref,
          command: spec.command,
          passed: r.exitCode === 0,
          exit_code: r.exitCode,
          timed_out: r.timedOut,
          duration_ms: r.durationMs,
          output_tail: spec.keepStdout === true ? r.outputTail.slice(-8192) : r.outputTail,
          started_at: startedAt,
          finished_at: finishedAt,
          log_file: logFile,
          ...(spec.keepStdout === true ? { stdout: r.stdoutTail } : {})
        }
      }
      return {
        ref: spec.ref,
        command: spec.command,
        passed: false,
        exit_code: null,
        timed_out: false,
        duration_ms: 0,
        output_tail: either === undefined ? "command failed" : either.left.message,
        started_at: startedAt,
        finished_at: finishedAt,
        log_file: null
      }
    })
  }).pipe(
    Effect.tap((r) => Effect.annotateCurrentSpan({ "runledger.exit_code": r.exit_code ?? -1, "runledger.passed": r.passed })),
    Effect.withSpan("runledger.loop.command", {
      attributes: { "runledger.run_id": ctx.runId, "runledger.issue_id": ctx.issueId ?? "", "runledger.stage": stage, "runledger.ref": spec.ref }
    })
  )

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

/**
 * Runs the Fixer and records its run as a `fixer` command of the stage, with its exit
 * code and log file (`fix` is handed the log file to write); a fixer failure is logged,
 * not fatal. Like every command, a killed fixer is recorded before the kill goes on.
 */
export const runFix = (
  ctx: StageContext,
  stage: string,
  command: string,
  fix: (logFile: string) => Effect.Effect<FixResult, FixerError>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const startedAt = yield* nowIso
    const startedMs = yield* Clock.currentTimeMillis
    const logFile = NodePath.join(ctx.logDir, `${String(ctx.nextLogIndex()).padStart(3, "0")}-${stage}-fixer.log`)
    const spec = { ref: "fixer", command }
    const result = yield* recordedRun(ctx, stage, Effect.either(fix(logFile)), (outcome, finished): CommandResult => {
      if (outcome._tag === "Killed") return killedResult(spec, outcome, { at: startedAt, ms: startedMs }, finished, logFile)
      const either = Exit.isSuccess(outcome) ? outcome.value : undefined
      const base = { ...spec, started_at: startedAt, finished_at: finished.at }
      if (either !== undefined && either._tag === "Right") {
        const r = either.right
        return {
          ...base,
          passed: r.exitCode === 0,
          exit_code: r.exitCode,
          timed_out: false,
          duration_ms: r.durationMs,
          output_tail: r.outputTail,
          log_file: r.logFile ?? null
        }
      }
      const e = either?.left
      return {
        ...base,
        passed: false,
        exit_code: e?.exitCode ?? null,
        timed_out: e?.reason === "Timeout",
        duration_ms: e?.durationMs ?? finished.ms - startedMs,
        output_tail: e === undefined ? "fixer failed" : e.outputTail ?? e.message,
        log_file: e?.logFile ?? null
      }
    })
    if (!result.passed) {
      yield* ctx.emit(
        `[fixer] failed: issue_id=${ctx.issueId ?? "-"}, exit_code=${result.exit_code ?? "none"}${
          result.timed_out ? ", timed_out" : ""
        }`
      )
    }
  })
