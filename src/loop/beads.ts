/**
 * Live beads: the issue tracker `bd` asked for work while the loop runs.
 *
 * The loop calls the tracker's CLI (no shell; `issues.command`, `bd` by default, split
 * at spaces) in the repository:
 *
 * - `bd ready --json` — the open issues with no open blockers. Epics are never worked
 *   as issues, and issues another runner holds (`in_progress`) are left alone.
 * - `bd update ID --status in_progress` — the claim, before an issue starts.
 * - `bd close ID --reason TEXT` — after the issue's work is integrated.
 * - `bd update ID --status open` — the release of an issue that did not succeed, so
 *   it does not stay claimed.
 * - `bd epic status --json` — epics whose children are all closed (`eligible_for_close`).
 * - `bd show ID --json` — an issue a resumed run works again.
 *
 * Every call's argv, exit code and output is returned so that the caller can record it.
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Data, Effect } from "effect"
import type { Issue } from "./issues.js"
import { capture } from "./supervisor.js"

/** A tracker call failed: not found, non-zero exit, or output that is not what was asked for. */
export class BeadsError extends Data.TaggedError("BeadsError")<{
  /** The argv, as one line. */
  readonly command: string
  readonly exitCode: number | null
  readonly message: string
}> {}

/** One tracker call, as recorded. */
export interface BeadsCall {
  readonly command: string
  readonly exit_code: number
  /** The end of stdout and stderr (the last 2 KiB of each). */
  readonly stdout: string
  readonly stderr: string
}

/** An issue of `bd ready`/`bd show`, with the fields the loop uses. */
export interface BeadsIssue extends Issue {
  readonly status: string
  readonly issueType: string
}

/** An epic of `bd epic status`. */
export interface BeadsEpic {
  readonly id: string
  readonly title: string
  readonly status: string
  readonly totalChildren: number
  readonly closedChildren: number
  readonly eligible: boolean
}

export interface BeadsClient {
  /** The argv prefix, as configured (for messages). */
  readonly program: string
  readonly ready: Effect.Effect<ReadonlyArray<BeadsIssue>, BeadsError, CommandExecutor.CommandExecutor>
  readonly show: (id: string) => Effect.Effect<BeadsIssue, BeadsError, CommandExecutor.CommandExecutor>
  readonly claim: (id: string) => Effect.Effect<BeadsCall, BeadsError, CommandExecutor.CommandExecutor>
  readonly release: (id: string) => Effect.Effect<BeadsCall, BeadsError, CommandExecutor.CommandExecutor>
  readonly close: (id: string, reason: string) => Effect.Effect<BeadsCall, BeadsError, CommandExecutor.CommandExecutor>
  readonly epics: Effect.Effect<ReadonlyArray<BeadsEpic>, BeadsError, CommandExecutor.CommandExecutor>
}

const TAIL = 2048
const tail = (s: string) => (s.length > TAIL ? s.slice(-TAIL) : s)

/** Splits `issues.command` into argv: whitespace-separated, no quoting. */
export const splitCommand = (command: string): Array<string> => command.trim().split(/\s+/).filter((s) => s !== "")

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : typeof v === "number" ? String(v) : undefined)
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null)

/** `bd … --json` prints a list, or (some versions) `{issues: [...]}`, or one object. */
const listOf = (value: unknown): Array<unknown> | undefined => {
  if (Array.isArray(value)) return value
  if (value !== null && typeof value === "object") {
    const o = value as Record<string, unknown>
    if (Array.isArray(o["issues"])) return o["issues"]
    return [value]
  }
  return undefined
}

const toIssue = (raw: unknown): BeadsIssue | undefined => {
  if (raw === null || typeof raw !== "object") return undefined
  const o = raw as Record<string, unknown>
  const id = str(o["id"])
  if (id === undefined || id === "") return undefined
  return {
    id,
    title: str(o["title"]) ?? id,
    body: str(o["description"]) ?? str(o["body"]) ?? "",
    priority: num(o["priority"]),
    dependsOn: [],
    status: str(o["status"]) ?? "open",
    issueType: str(o["issue_type"]) ?? str(o["type"]) ?? "task"
  }
}

const toEpic = (raw: unknown): BeadsEpic | undefined => {
  if (raw === null || typeof raw !== "object") return undefined
  const o = raw as Record<string, unknown>
  const epic = (o["epic"] !== null && typeof o["epic"] === "object" ? o["epic"] : o) as Record<string, unknown>
  const id = str(epic["id"])
  if (id === undefined || id === "") return undefined
  const total = num(o["total_children"]) ?? 0
  const closed = num(o["closed_children"]) ?? 0
  return {
    id,
    title: str(epic["title"]) ?? id,
    status: str(epic["status"]) ?? "open",
    totalChildren: total,
    closedChildren: closed,
    eligible: o["eligible_for_close"] === true || (total > 0 && closed === total)
  }
}

/** A client for the tracker CLI `command` (argv prefix), run in `cwd`. */
export const beadsClient = (command: string, cwd: string): BeadsClient => {
  const argv = splitCommand(command)
  const [program, ...lead] = argv.length === 0 ? ["bd"] : argv
  const call = (args: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const line = [program!, ...lead, ...args].join(" ")
      const r = yield* capture(program!, [...lead, ...args], cwd).pipe(
        Effect.mapError((e) =>
          new BeadsError({ command: line, exitCode: null, message: `cannot run ${program}: ${e.message}` })
        )
      )
      const recorded: BeadsCall = { command: line, exit_code: r.exitCode, stdout: tail(r.stdout), stderr: tail(r.stderr) }
      if (r.exitCode !== 0) {
        const why = r.stderr.trim().split("\n").at(-1) || r.stdout.trim().split("\n").at(-1) || ""
        return yield* Effect.fail(
          new BeadsError({ command: line, exitCode: r.exitCode, message: `exit ${r.exitCode}${why === "" ? "" : `: ${why}`}` })
        )
      }
      return { recorded, stdout: r.stdout }
    })
  const json = (args: ReadonlyArray<string>) =>
    Effect.flatMap(call(args), ({ stdout }) =>
      Effect.try({
        try: () => (stdout.trim() === "" ? [] : JSON.parse(stdout)) as unknown,
        catch: (e) =>
          new BeadsError({
            command: [program!, ...lead, ...args].join(" "),
            exitCode: 0,
            message: `output is not JSON (${String(e)}): ${stdout.slice(0, 200)}`
          })
      }))
  const issues = (args: ReadonlyArray<string>) =>
    Effect.flatMap(json(args), (value) => {
      const list = listOf(value)
      if (list === undefined) {
        return Effect.fail(
          new BeadsError({ command: [program!, ...lead, ...args].join(" "), exitCode: 0, message: "expected a JSON list of issues" })
        )
      }
      return Effect.succeed(list.flatMap((raw) => {
        const issue = toIssue(raw)
        return issue === undefined ? [] : [issue]
      }))
    })
  return {
    program: [program!, ...lead].join(" "),
    ready: issues(["ready", "--json"]),
    show: (id) =>
      Effect.flatMap(issues(["show", id, "--json"]), (found) => {
        const issue = found.find((i) => i.id === id) ?? found[0]
        return issue === undefined
          ? Effect.fail(new BeadsError({ command: `${program} show ${id} --json`, exitCode: 0, message: `no issue ${id}` }))
          : Effect.succeed(issue)
      }),
    claim: (id) => Effect.map(call(["update", id, "--status", "in_progress"]), (r) => r.recorded),
    release: (id) => Effect.map(call(["update", id, "--status", "open"]), (r) => r.recorded),
    close: (id, reason) => Effect.map(call(["close", id, "--reason", reason]), (r) => r.recorded),
    epics: Effect.flatMap(json(["epic", "status", "--json"]), (value) =>
      Effect.succeed((listOf(value) ?? []).flatMap((raw) => {
        const epic = toEpic(raw)
        return epic === undefined ? [] : [epic]
      })))
  }
}

/** What the ready set offers this run: open, not an epic, not yet taken by the run. */
export const workable = (ready: ReadonlyArray<BeadsIssue>, taken: ReadonlySet<string>): Array<BeadsIssue> =>
  ready
    .filter((i) => i.issueType !== "epic" && i.status === "open" && !taken.has(i.id))
    .map((issue, index) => ({ issue, index }))
    .sort((a, b) =>
      (a.issue.priority ?? Number.POSITIVE_INFINITY) - (b.issue.priority ?? Number.POSITIVE_INFINITY) || a.index - b.index
    )
    .map((x) => x.issue)
