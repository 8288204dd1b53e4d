import * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Effect, Layer } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { Fixer, FixerError, type FixRequest, NoFixer } from "../services/fixer.js"
import type { LoopConfig } from "./config.js"
import { supervise } from "./supervisor.js"

/** The fixer's process record: the run and issue from its environment (run_end's ISSUE_ID is empty). */
const fixerLabel = (request: FixRequest) => {
  const runId = request.env?.["RUN_ID"]
  const issueId = request.env?.["ISSUE_ID"]
  return runId === undefined
    ? undefined
    : { runId, issueId: issueId === undefined || issueId === "" ? null : issueId, stage: request.trigger, ref: "fixer" }
}

/**
 * The Fixer that runs the config's `fixer.command` under the supervisor, in the
 * issue's worktree, with `FAILURE_FILE` (the failing commands and their output),
 * `TRIGGER`, `ISSUE_ID` and `ATTEMPT` in its environment, its output in the request's
 * `logFile`, and the request's `hardKill` handed to the supervisor. A non-zero exit or a
 * timeout is a `FixerError` that still carries the exit code and the log file. Without
 * a configured fixer it is `NoFixer`.
 */
export const CommandFixer = (
  config: Pick<LoopConfig, "fixer" | "killGraceMs">
): Layer.Layer<Fixer, never, CommandExecutor.CommandExecutor> => {
  const fixer = config.fixer
  if (fixer === undefined) return NoFixer
  return Layer.effect(
    Fixer,
    Effect.gen(function*() {
      const executor = yield* CommandExecutor.CommandExecutor
      return {
        available: true,
        runFixer: (request) =>
          Effect.gen(function*() {
            const dir = request.env?.["ISSUE_DIR"] ?? NodeOs.tmpdir()
            const stem = `fixer-${request.trigger}-${request.attempt}-${process.pid}-${Date.now()}`
            const failureFile = NodePath.join(dir, `${stem}.failure.txt`)
            yield* Effect.try({
              try: () => {
                NodeFs.mkdirSync(dir, { recursive: true })
                NodeFs.writeFileSync(failureFile, request.failureOutput)
              },
              catch: (e) => new FixerError({ reason: "SpawnFailed", message: `cannot write FAILURE_FILE: ${String(e)}` })
            })
            const logFile = request.logFile ?? NodePath.join(dir, `${stem}.log`)
            const result = yield* supervise({
              command: fixer.command,
              cwd: request.cwd ?? process.cwd(),
              env: {
                ...request.env,
                FAILURE_FILE: failureFile,
                TRIGGER: request.trigger,
                ISSUE_ID: request.issueId,
                ATTEMPT: String(request.attempt)
              },
              timeoutMs: fixer.timeoutMs,
              graceMs: config.killGraceMs,
              logFile,
              label: fixerLabel(request),
              ...(request.hardKill === undefined ? {} : { hardKill: request.hardKill })
            }).pipe(
              Effect.provideService(CommandExecutor.CommandExecutor, executor),
              Effect.mapError((e) => new FixerError({ reason: "SpawnFailed", message: e.message }))
            )
            const ran = { exitCode: result.exitCode, durationMs: result.durationMs, outputTail: result.outputTail, logFile }
            if (result.timedOut) {
              return yield* Effect.fail(
                new FixerError({ reason: "Timeout", message: `fixer timed out after ${fixer.timeoutMs}ms`, ...ran })
              )
            }
            if (result.exitCode !== 0) {
              return yield* Effect.fail(
                new FixerError({
                  reason: "CommandFailed",
                  message: `fixer exited with ${result.exitCode ?? result.signal}: ${result.outputTail.slice(-500)}`,
                  ...ran
                })
              )
            }
            return { exitCode: 0, durationMs: result.durationMs, outputTail: result.outputTail, logFile }
          })
      }
    })
  )
}
