import { Effect, Exit } from "effect"
import type { LoopRecordError, LoopRecorderService } from "../services/loop-recorder.js"
import { nowIso } from "./results.js"

/**
 * An issue's stage rows: each stage is written `running` as it starts and completed
 * when it ends, and the commands run meanwhile are attached to it.
 */
export interface StageTrail {
  /** The stage running now, if any: the stage the next recorded command belongs to. */
  readonly current: () => string | null
  /**
   * Runs `body` as a recorded stage. Its success is stored as `summarize` says; a
   * failure or an interruption leaves the row `interrupted` (`killed` or `error`).
   */
  readonly run: <A, E, R>(
    name: string,
    attempt: number,
    body: Effect.Effect<A, E, R>,
    summarize: (a: A) => { status: string; reason: string | null; result: unknown }
  ) => Effect.Effect<A, E | LoopRecordError, R>
  /** A stage that did not run: one row, started and completed `skipped` at once. */
  readonly skipped: (name: string, reason: string, result: unknown) => Effect.Effect<void, LoopRecordError>
}

export const makeStageTrail = (recorder: LoopRecorderService, runId: string, issueId: string): StageTrail => {
  let current: string | null = null
  return {
    current: () => current,
    run: (name, attempt, body, summarize) =>
      // Uninterruptible around the body, so that an interrupted stage (a hard kill)
      // still closes its row before the interruption goes on.
      Effect.uninterruptibleMask((restore) => Effect.gen(function*() {
        const stageId = yield* recorder.startStage({ runId, issueId, stage: name, attempt, startedAt: yield* nowIso })
        current = stageId
        const exit = yield* Effect.exit(restore(body).pipe(
          Effect.tap((a) => Effect.annotateCurrentSpan("runledger.stage_status", summarize(a).status)),
          Effect.withSpan("runledger.loop.stage", {
            attributes: { "runledger.run_id": runId, "runledger.issue_id": issueId, "runledger.stage": name, "runledger.attempt": attempt }
          })
        ))
        const completedAt = yield* nowIso
        if (Exit.isSuccess(exit)) {
          yield* recorder.finishStage(stageId, { ...summarize(exit.value), completedAt })
        } else {
          yield* recorder.finishStage(stageId, {
            status: "interrupted",
            reason: Exit.isInterrupted(exit) ? "killed" : "error",
            completedAt,
            result: null
          }).pipe(Effect.ignore)
        }
        current = null
        return yield* exit
      })),
    skipped: (name, reason, result) =>
      Effect.gen(function*() {
        const at = yield* nowIso
        const stageId = yield* recorder.startStage({ runId, issueId, stage: name, attempt: 1, startedAt: at })
        yield* recorder.finishStage(stageId, { status: "skipped", reason, completedAt: at, result })
      })
  }
}
