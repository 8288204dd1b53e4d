/**
 * The run folder (`<workdir>/runs/<run_id>/`): the event log, one folder per issue
 * with the files handed to its commands, and the run_end logs.
 */
import { Effect } from "effect"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { TelemetryEvent } from "../services/telemetry.js"
import type { Issue } from "./issues.js"
import type { Resolution } from "./lifecycle.js"
import { nowIso } from "./results.js"

export const newRunId = (startedAt: string) =>
  `loop-${startedAt.replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}-${NodeCrypto.randomBytes(3).toString("hex")}`

export const createRunFolder = (workdir: string, runId: string) =>
  Effect.sync(() => {
    const runDir = NodePath.join(workdir, "runs", runId)
    NodeFs.mkdirSync(runDir, { recursive: true })
    return runDir
  })

/** An event line goes to `events.jsonl` in the run folder and to Telemetry. */
export const eventEmitter = (
  runDir: string,
  runId: string,
  telemetry: { readonly emit: (event: TelemetryEvent) => Effect.Effect<void> }
) => {
  const eventLog = NodePath.join(runDir, "events.jsonl")
  return (line: string): Effect.Effect<void> =>
    Effect.gen(function*() {
      const at = yield* nowIso
      yield* Effect.sync(() => NodeFs.appendFileSync(eventLog, JSON.stringify({ at, run_id: runId, line }) + "\n")).pipe(
        Effect.ignore
      )
      yield* telemetry.emit({ _tag: "TriggerEvent", runId, line, at })
    })
}

/** The files of one issue; each is handed to its commands under the variable named in loop.md. */
export interface IssueFolder {
  /** `ISSUE_DIR` */
  readonly dir: string
  readonly logDir: string
  /** `ISSUE_FILE`: the issue's title and body as Markdown. */
  readonly issue: string
  /** `RESULT_FILE`: where the implementer may write a resolution. */
  readonly result: string
  /** `FEEDBACK_FILE`: gate failure output or blocking review findings. */
  readonly feedback: string
  /** `DIFF_FILE` */
  readonly diff: string
  /** `SESSION_END_RESULT_FILE` */
  readonly sessionEnd: string
}

/** Creates the issue's folder (and its logs folder). */
export const createIssueFolder = (runDir: string, issueId: string) =>
  Effect.sync((): IssueFolder => {
    const dir = NodePath.join(runDir, "issues", issueId.replace(/[^A-Za-z0-9._-]+/g, "_"))
    const logDir = NodePath.join(dir, "logs")
    NodeFs.mkdirSync(logDir, { recursive: true })
    return {
      dir,
      logDir,
      issue: NodePath.join(dir, "issue.md"),
      result: NodePath.join(dir, "result.json"),
      feedback: NodePath.join(dir, "feedback.md"),
      diff: NodePath.join(dir, "diff.patch"),
      sessionEnd: NodePath.join(dir, "session_end_result.json")
    }
  })

/** Creates the folder of the run's own stage and returns it (`ISSUE_DIR` of run_end). */
export const createRunEndFolder = (runDir: string) =>
  Effect.sync(() => {
    const dir = NodePath.join(runDir, "run_end")
    NodeFs.mkdirSync(dir, { recursive: true })
    return dir
  })

export const writeFile = (file: string, text: string) => Effect.sync(() => NodeFs.writeFileSync(file, text))

export const removeFile = (file: string) => Effect.sync(() => NodeFs.rmSync(file, { force: true }))

export const writeIssueFile = (folder: IssueFolder, issue: Issue) =>
  writeFile(folder.issue, `# ${issue.title}\n\nid: ${issue.id}\n\n${issue.body}\n`)

const RESOLUTIONS = new Set(["no_change", "already_complete", "obsolete"])

/** Reads `$RESULT_FILE`: a resolution passes the gate without a commit. Missing or unreadable: none. */
export const readResolution = (file: string) =>
  Effect.sync((): Resolution | null => {
    try {
      const parsed = JSON.parse(NodeFs.readFileSync(file, "utf8")) as { resolution?: unknown }
      return typeof parsed.resolution === "string" && RESOLUTIONS.has(parsed.resolution)
        ? parsed.resolution as Resolution
        : null
    } catch {
      return null
    }
  })
