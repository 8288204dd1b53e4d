import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Effect } from "effect"
import * as NodeCrypto from "node:crypto"
import type { LoopConfig } from "./config.js"
import { type CommandResult, failureText, runCommand, type StageContext, validationPassed } from "./results.js"
import { commitsSince, headSha, isClean, type Workspace } from "./workspace.js"

export interface GateOutcome {
  readonly passed: boolean
  /** What the implementer is told on a retry: the failing commands, a missing commit. */
  readonly failure: string
  readonly results: ReadonlyArray<CommandResult>
}

/**
 * The gate: every gate command in order, then (with `require_commit`) a commit past
 * `base_sha` on the branch.
 */
export const runGate = (
  ctx: StageContext,
  config: Pick<LoopConfig, "gate" | "commands">,
  ws: Workspace,
  attempt: { readonly attempt: number; readonly maxAttempts: number }
) =>
  Effect.gen(function*() {
    const results: Array<CommandResult> = []
    for (const def of config.gate.commands) {
      results.push(
        yield* runCommand(ctx, "gate", {
          ...def,
          env: { ATTEMPT: String(attempt.attempt), MAX_ATTEMPTS: String(attempt.maxAttempts) }
        })
      )
    }
    const commandsPassed = validationPassed(results, (ref) => config.commands[ref]?.allowFail ?? false)
    const committed = !config.gate.requireCommit ||
      (yield* commitsSince(ws.path, ws.baseSha).pipe(Effect.orElseSucceed(() => 0))) > 0
    const failure = (commandsPassed ? "" : failureText(results)) +
      (committed ? "" : `No commit past base_sha ${ws.baseSha} on branch ${ws.branch}.\n`)
    const outcome: GateOutcome = { passed: commandsPassed && committed, failure, results }
    return outcome
  })

/** Where a failed gate left the issue: its HEAD and a fingerprint of the failure. */
export interface FailedGate {
  readonly head: string
  readonly failure: string
}

export interface GateProgress {
  readonly current: FailedGate
  /** Same HEAD, a clean tree and the same failure as the previous failed gate. */
  readonly noProgress: boolean
}

const sha256 = (text: string) => NodeCrypto.createHash("sha256").update(text).digest("hex")

/**
 * Records a failed gate and tells whether it made no progress: the same HEAD, a clean
 * tree and the same failure as the previous failed gate. Durations are left out of
 * the fingerprint, so that timing noise does not count as progress.
 */
export const checkProgress = (
  cwd: string,
  failure: string,
  previous: FailedGate | null
): Effect.Effect<GateProgress, never, CommandExecutor.CommandExecutor> =>
  Effect.gen(function*() {
    const head = yield* headSha(cwd).pipe(Effect.orElseSucceed(() => ""))
    const clean = yield* isClean(cwd).pipe(Effect.orElseSucceed(() => false))
    const current: FailedGate = { head, failure: sha256(failure.replace(/\d+(\.\d+)?m?s\b/g, "")) }
    const noProgress = previous !== null && previous.head === head && clean && previous.failure === current.failure
    return { current, noProgress }
  })
