import { Context, Data, Effect } from "effect"
import type {
  LoopCommandRecord,
  LoopIssueFinish,
  LoopIntegrationInfo,
  LoopIssueStart,
  LoopRunFinish,
  LoopRunRecord,
  LoopRunResume,
  LoopRunStart,
  LoopRunSummary,
  LoopStageFinish,
  LoopStageStart,
  LoopStageSummary
} from "./loop-records.js"

/** A loop audit write (or read) failed. The trail is the record: a failed write fails the run. */
/** A supervised command's process group, as it starts (table loop_processes). */
export interface LoopProcessStart {
  /** Also the value of RUNLEDGER_COMMAND_ID in the command's environment. */
  readonly processId: string
  readonly runId: string
  /** null for the run's own stage (run_end). */
  readonly issueId: string | null
  readonly stage: string
  readonly ref: string
  readonly command: string
  readonly logFile: string | null
  readonly pgid: number
  readonly startedAt: string
}

export class LoopRecordError extends Data.TaggedError("LoopRecordError")<{
  readonly operation: string
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * The issue loop's audit-trail port. Every event is written as it happens (no
 * buffer): a stage row reads `running` from its start, so a process that dies
 * leaves a trail whose open stages can be recognised. Layer: `LoopRecorderSql`
 * (landscape/), also part of `SqliteLandscape(url)`.
 */
export interface LoopRecorderService {
  readonly beginRun: (run: LoopRunStart) => Effect.Effect<void, LoopRecordError>
  /** Adds issues to a running run (`pending`; live beads claims them as it goes) and counts them in its total. */
  readonly addIssues: (
    runId: string,
    issues: ReadonlyArray<{ readonly id: string; readonly title: string; readonly priority: number | null }>
  ) => Effect.Effect<void, LoopRecordError>
  readonly startIssue: (runId: string, issueId: string, info: LoopIssueStart) => Effect.Effect<void, LoopRecordError>
  readonly finishIssue: (runId: string, issueId: string, info: LoopIssueFinish) => Effect.Effect<void, LoopRecordError>
  /** Writes a `running` stage row and returns its id. */
  readonly startStage: (stage: LoopStageStart) => Effect.Effect<string, LoopRecordError>
  readonly finishStage: (stageId: string, info: LoopStageFinish) => Effect.Effect<void, LoopRecordError>
  readonly recordCommand: (command: LoopCommandRecord) => Effect.Effect<void, LoopRecordError>
  readonly finishRun: (runId: string, info: LoopRunFinish) => Effect.Effect<void, LoopRecordError>
  /** Names the run's integration branch, strategy and base (once, as the run starts). */
  readonly setIntegration: (runId: string, info: LoopIntegrationInfo) => Effect.Effect<void, LoopRecordError>
  /**
   * The integration branch moved to `head`: by an issue's merge (`issueId`, whose
   * `integration_sha` it becomes) or by the run itself (`issueId` null).
   */
  readonly recordIntegration: (
    runId: string,
    issueId: string | null,
    head: string
  ) => Effect.Effect<void, LoopRecordError>
  /** A run and its issues, for a resume; undefined when there is no such loop run. */
  readonly loadRun: (runId: string) => Effect.Effect<LoopRunRecord | undefined, LoopRecordError>
  /**
   * Takes a finished run over for another attempt: the run reads `running` again,
   * owned by this process, its attempt counter +1 (returned); the issues to work again
   * read `pending`. Fails when the run is `running`.
   */
  readonly resumeRun: (runId: string, info: LoopRunResume) => Effect.Effect<number, LoopRecordError>
  /**
   * A command's process group, written `running` as the command starts, so that the
   * command that next opens the Landscape after a crash can kill what survived.
   */
  readonly startProcess: (process: LoopProcessStart) => Effect.Effect<void, LoopRecordError>
  /** The command's process group is gone. */
  readonly endProcess: (processId: string, endedAt: string) => Effect.Effect<void, LoopRecordError>
  /**
   * Loop runs, newest first. A run still `running` whose owning process is gone reads
   * `interrupted, reason=process_crash`.
   */
  readonly listRuns: Effect.Effect<ReadonlyArray<LoopRunSummary>, LoopRecordError>
  /** The stages of one run; stages left `running` by a crashed process read `interrupted, reason=process_crash`. */
  readonly listStages: (runId: string) => Effect.Effect<ReadonlyArray<LoopStageSummary>, LoopRecordError>
}

export class LoopRecorder extends Context.Tag("runledger/LoopRecorder")<LoopRecorder, LoopRecorderService>() {}

/** Loop runs for `runledger runs`, newest first (see `LoopRecorderService.listRuns`). */
export const listLoopRuns = (): Effect.Effect<ReadonlyArray<LoopRunSummary>, LoopRecordError, LoopRecorder> =>
  Effect.flatMap(LoopRecorder, (recorder) => recorder.listRuns)

/** The stages of one loop run (see `LoopRecorderService.listStages`). */
export const listLoopStages = (
  runId: string
): Effect.Effect<ReadonlyArray<LoopStageSummary>, LoopRecordError, LoopRecorder> =>
  Effect.flatMap(LoopRecorder, (recorder) => recorder.listStages(runId))
