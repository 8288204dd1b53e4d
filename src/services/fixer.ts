import { Context, Data, Effect, Layer } from "effect"

/** What the fixer is asked to repair: one failed validation of one issue. */
export interface FixRequest {
  readonly issueId: string
  /** The trigger whose validation failed, e.g. `session_end`. */
  readonly trigger: string
  /** Text of the failing commands' output, handed to the fixer as a file. */
  readonly failureOutput: string
  /** 1-based remediation attempt. */
  readonly attempt: number
  /** Working directory of the issue (its worktree). */
  readonly cwd?: string
  /** Extra environment for the fixer process. */
  readonly env?: Readonly<Record<string, string>>
  /** Where the fixer's output goes (the caller records it with the run). */
  readonly logFile?: string
  /**
   * Polled while a kill waits out its grace period: true means SIGKILL now (the run's
   * second Ctrl-C). Without it a fixer that ignores SIGTERM is killed after the grace.
   */
  readonly hardKill?: Effect.Effect<boolean>
}

export interface FixResult {
  readonly exitCode: number
  readonly durationMs: number
  readonly outputTail: string
  readonly logFile?: string | null
}

/** A fixer that did not succeed; when its process ran, what it did (for the record). */
export class FixerError extends Data.TaggedError("FixerError")<{
  readonly reason: "NotConfigured" | "CommandFailed" | "Timeout" | "SpawnFailed"
  readonly message: string
  /** The process's exit code (null: killed by a signal, or by its timeout). */
  readonly exitCode?: number | null
  readonly durationMs?: number
  readonly outputTail?: string
  readonly logFile?: string
}> {}

/**
 * The Fixer port: runs a repair between two failed validations when a trigger's
 * `failure_mode` is `remediate`. Layers: a command fixer (loop/) and `NoFixer`.
 */
export class Fixer extends Context.Tag("runledger/Fixer")<Fixer, {
  /** False for `NoFixer`: configs that need remediation must be refused at load time. */
  readonly available: boolean
  readonly runFixer: (request: FixRequest) => Effect.Effect<FixResult, FixerError>
}>() {}

/** A Fixer that refuses every request; wiring code checks `available` first. */
export const NoFixer: Layer.Layer<Fixer> = Layer.succeed(Fixer, {
  available: false,
  runFixer: (request) =>
    Effect.fail(
      new FixerError({
        reason: "NotConfigured",
        message: `no fixer is configured; cannot remediate ${request.trigger} for issue ${request.issueId}`
      })
    )
})
