/**
 * How the CLI ends: the one place that maps typed errors, run statuses and the final
 * Exit of a command to the exit codes of the contract (0 success, 1 the work ran and
 * failed, 2 bad usage or invalid configuration, 130 interrupted) and to the one line
 * printed on stderr. Commands pipe their program through `exitOnError`; `bin.ts` turns
 * the command's Exit into the process exit code with `exitCodeOf`.
 */
import type { ResumeRefused } from "../pipeline/resume.js"
import * as ValidationError from "@effect/cli/ValidationError"
import { Cause, Data, Effect, Exit, Option } from "effect"
import type { ExportError } from "../landscape/exporter.js"
import type { LineageError } from "../landscape/lineage.js"
import type { SigningKeyMissing } from "../services/signing.js"
import type { LandscapeOpenError, LandscapeUrlError } from "../landscape/sqlite.js"
import type { ExportVerificationError } from "../landscape/verify.js"
import { formatLoopConfigError, type LoopConfigError } from "../loop/config.js"
import { formatIssueSourceError, type IssueSourceError } from "../loop/issues.js"
import type { LoopRecordError } from "../services/loop-recorder.js"
import type { LoopRunStatus } from "../services/loop-records.js"
import type { WorkspaceError } from "../loop/workspace.js"
import type { PipelineRunError } from "../pipeline/orchestrator/types.js"
import type { SettingsError } from "../pipeline/settings.js"
import type { RecorderError } from "../services/recorder.js"

/** Exit codes of the CLI contract. */
export const ExitCodes = {
  ok: 0,
  /** The work ran and failed: run failed, verification failed, a loop with no success. */
  failed: 1,
  /** Bad usage or invalid configuration. */
  usage: 2,
  interrupted: 130
} as const

/**
 * How a command ends with a non-zero exit code: the bin prints `message` (one line on
 * stderr, when present) and exits with `code`.
 */
export class CliExit extends Data.TaggedError("CliExit")<{
  readonly code: number
  readonly message?: string
}> {}

/** Bad usage found by a command itself (exit 2). */
export const usageError = (message: string): CliExit => new CliExit({ code: ExitCodes.usage, message })

// ---------------------------------------------------------------------------
// Typed errors → exit codes

/** Every typed error a command may end with, mapped below. */
export type MappedError =
  | LandscapeUrlError
  | LandscapeOpenError
  | RecorderError
  | LineageError
  | SigningKeyMissing
  | ExportError
  | ExportVerificationError
  | SettingsError
  | PipelineRunError
  | LoopConfigError
  | IssueSourceError
  | WorkspaceError
  | LoopRecordError
  | ResumeRefused

type Tag = MappedError["_tag"]

/** What each error means for the caller: its exit code and its stderr line. */
const mapping: { readonly [T in Tag]: (e: Extract<MappedError, { _tag: T }>) => CliExit } = {
  // Landscape: a wrong URL, a file that is no Landscape (or a newer one), an unknown run
  // are usage; anything else went wrong while working.
  LandscapeUrlError: (e) => usageError(e.message),
  // A key that does not open the file, a journal or payload store that cannot be set up.
  LandscapeOpenError: (e) => usageError(e.message),
  RecorderError: (e) =>
    new CliExit({
      code: e.reason === "NotALandscape" || e.reason === "NewerSchema" || e.reason === "MissingRun"
        ? ExitCodes.usage
        : ExitCodes.failed,
      message: e.message
    }),
  // Lineage: an unknown run, row or token, an ambiguous row, a malformed query.
  LineageRunNotFound: (e) => usageError(e.message),
  LineageRowNotFound: (e) => usageError(e.message),
  LineageTokenNotFound: (e) => usageError(e.message),
  AmbiguousLineage: (e) => usageError(e.message),
  InvalidLineageQuery: (e) => usageError(e.message),
  // Export and verification.
  SigningKeyMissing: (e) => usageError(e.message),
  ExportError: (e) => new CliExit({ code: ExitCodes.failed, message: e.message }),
  ExportVerificationError: (e) =>
    new CliExit({
      code: e.reason === "unreadable" && e.message === "no such file" ? ExitCodes.usage : ExitCodes.failed,
      message: `${e.path}: ${e.message}`
    }),
  // Pipelines: invalid settings (file, key, message), a run that failed.
  SettingsError: (e) => usageError(e.text),
  PipelineRunError: (e) => new CliExit({ code: ExitCodes.failed, message: `run ${e.runId} failed: ${e.message}` }),
  ResumeRefused: (e) => usageError(`cannot resume: ${e.message}`),
  // Issue loops.
  LoopConfigError: (e) => usageError(formatLoopConfigError(e)),
  IssueSourceError: (e) => usageError(formatIssueSourceError(e)),
  WorkspaceError: (e) => new CliExit({ code: ExitCodes.failed, message: `${e.operation} in ${e.path}: ${e.message}` }),
  LoopRecordError: (e) => new CliExit({ code: ExitCodes.failed, message: `audit write failed (${e.operation}): ${e.message}` })
}

const isMapped = (e: unknown): e is MappedError =>
  typeof e === "object" && e !== null && "_tag" in e && typeof e._tag === "string" && Object.hasOwn(mapping, e._tag)

/** The CliExit a typed error ends the command with. */
export const exitFor = (error: MappedError): CliExit =>
  (mapping[error._tag] as (e: MappedError) => CliExit)(error)

/** Maps every typed error of `effect` the CLI knows to its CliExit; others pass through. */
export const exitOnError = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, MappedError> | CliExit, R> =>
  Effect.catchIf(effect, (e): e is Extract<E, MappedError> => isMapped(e), (e) => Effect.fail(exitFor(e))) as never

// ---------------------------------------------------------------------------
// Statuses → exit codes

/** An issue loop that finished: 0 completed, 1 failed (no issue succeeded, run_end failed), 130 interrupted. */
export const loopStatusExit = (status: LoopRunStatus): Effect.Effect<void, CliExit> =>
  status === "interrupted"
    ? Effect.fail(new CliExit({ code: ExitCodes.interrupted }))
    : status === "failed"
    ? Effect.fail(new CliExit({ code: ExitCodes.failed }))
    : Effect.void

// ---------------------------------------------------------------------------
// The command's Exit → the process exit code

export interface ExitContext {
  /** `--verbose` was given: stack traces and the full cause on stderr. */
  readonly verbose: boolean
  /** A SIGINT arrived while the command ran. */
  readonly interrupted: boolean
}

const describeDefect = (defect: unknown, verbose: boolean): string =>
  defect instanceof Error ? (verbose ? (defect.stack ?? defect.message) : defect.message) : String(defect)

/**
 * The exit code for how the command ended, printing its stderr line: the message of a
 * CliExit (or of any other typed error, exit 1), nothing for usage problems (the
 * argument parser already printed them with the help), 130 for an interruption, and
 * "internal error" for defects.
 */
export const exitCodeOf = (exit: Exit.Exit<unknown, unknown>, context: ExitContext): number => {
  if (Exit.isSuccess(exit)) return ExitCodes.ok
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const error = isMapped(failure.value) ? exitFor(failure.value) : failure.value
    if (error instanceof CliExit) {
      if (error.message !== undefined && error.message !== "") process.stderr.write(`runledger: ${error.message}\n`)
      return error.code
    }
    if (ValidationError.isValidationError(error)) return ExitCodes.usage
    const message = (error as { message?: unknown }).message
    process.stderr.write(`runledger: ${typeof message === "string" ? message : String(error)}\n`)
    if (context.verbose) process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
    return ExitCodes.failed
  }
  if (context.interrupted || Cause.isInterruptedOnly(exit.cause)) return ExitCodes.interrupted
  for (const d of Cause.defects(exit.cause)) process.stderr.write(`runledger: internal error: ${describeDefect(d, context.verbose)}\n`)
  if (!context.verbose) process.stderr.write("runledger: run again with --verbose for the stack trace\n")
  return ExitCodes.failed
}
