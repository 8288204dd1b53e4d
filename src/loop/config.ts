import { Effect, Either, ParseResult, Schema } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as YAML from "yaml"
import { resolveTelemetry, type TelemetryRequest, TelemetrySettings } from "../services/telemetry-settings.js"
import { expects, firstProblem, renderPath } from "./schema-errors.js"

/** Invalid loop configuration: names the file, the key and the offending value. */
export class LoopConfigError extends Schema.TaggedError<LoopConfigError>()("LoopConfigError", {
  file: Schema.String,
  key: Schema.String,
  value: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/** The exact migration error for the legacy run-level validation key. */
export const GLOBAL_VALIDATION_MIGRATION_ERROR = [
  "global_validation_commands is deprecated. Migrate to validation_triggers.run_end:",
  "",
  "validation_triggers:",
  "  run_end:",
  "    failure_mode: continue",
  "    commands:",
  "      - ref: test",
  "      - ref: lint",
  ""
].join("\n")

const DURATION_TEXT = "a duration such as 500ms, 2s, 10m, 1h or a number of seconds"
const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Parses `500ms`, `2s`, `10m`, `1h` or a number of seconds into milliseconds. */
export const parseDuration = (input: unknown): number | undefined => {
  if (typeof input === "number") return Number.isFinite(input) && input >= 0 ? Math.round(input * 1000) : undefined
  if (typeof input !== "string") return undefined
  const match = DURATION_RE.exec(input)
  if (match === null) return undefined
  return Math.round(Number(match[1]) * UNIT_MS[match[2] ?? "s"]!)
}

/** A duration in the config file, decoded to milliseconds. */
export const DurationMs = Schema.transformOrFail(Schema.Union(Schema.Number, Schema.String), Schema.Number, {
  strict: true,
  decode: (input, _, ast) => {
    const ms = parseDuration(input)
    return ms === undefined
      ? ParseResult.fail(
        new ParseResult.Type(ast, input, `expected ${DURATION_TEXT}`)
      )
      : ParseResult.succeed(ms)
  },
  encode: (ms) => ParseResult.succeed(`${ms}ms`)
}).annotations(expects(DURATION_TEXT))

const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative()).annotations(expects("a non-negative integer"))
const PositiveInt = Schema.Int.pipe(Schema.positive()).annotations(expects("a positive integer"))
const FailureMode = Schema.Literal("abort", "continue", "remediate")
export type FailureMode = typeof FailureMode.Type
const FireOn = Schema.Literal("success", "failure", "both")
export type FireOn = typeof FireOn.Type
const Priority = Schema.Literal("P0", "P1", "P2", "P3")

const CommandSpec = Schema.Struct({
  command: Schema.NonEmptyString,
  timeout: Schema.optional(DurationMs),
  allow_fail: Schema.optionalWith(Schema.Boolean, { default: () => false })
})
/** A named command: a string, or `{command, timeout, allow_fail}`. */
const CommandEntry = Schema.Union(Schema.NonEmptyString, CommandSpec).annotations(
  expects("a command string or a mapping {command, timeout, allow_fail}")
)

/**
 * An item of `gate.commands` and `validation_triggers.*.commands`: a command name
 * (`- test`), a reference (`- ref: test`), or an inline command
 * (`- command: "npm test"`, optionally with `ref`, `timeout`, `allow_fail`).
 */
const CommandItem = Schema.Union(
  Schema.NonEmptyString,
  Schema.Struct({
    ref: Schema.optional(Schema.NonEmptyString),
    command: Schema.optional(Schema.NonEmptyString),
    timeout: Schema.optional(DurationMs),
    allow_fail: Schema.optional(Schema.Boolean)
  })
).annotations(expects("a command name or a mapping {ref: name} or {command: ...}"))
type CommandItem = typeof CommandItem.Type

const Actor = Schema.Struct({
  command: Schema.NonEmptyString,
  timeout: Schema.optional(DurationMs)
})

const CodeReview = Schema.Struct({ enabled: Schema.optionalWith(Schema.Boolean, { default: () => false }) })

const SessionEndSchema = Schema.Struct({
  failure_mode: Schema.optionalWith(FailureMode, { default: () => "continue" as const }),
  max_retries: Schema.optional(NonNegativeInt),
  timeout: Schema.optional(DurationMs),
  commands: Schema.optionalWith(Schema.Array(CommandItem), { default: () => [] }),
  code_review: Schema.optional(CodeReview)
})

const RunEndSchema = Schema.Struct({
  fire_on: Schema.optionalWith(FireOn, { default: () => "success" as const }),
  failure_mode: Schema.optionalWith(FailureMode, { default: () => "continue" as const }),
  max_retries: Schema.optional(NonNegativeInt),
  timeout: Schema.optional(DurationMs),
  commands: Schema.optionalWith(Schema.Array(CommandItem), { default: () => [] }),
  code_review: Schema.optional(CodeReview)
})

const IntegrationStrategy = Schema.Literal("merge", "rebase", "none")
export type IntegrationStrategy = typeof IntegrationStrategy.Type
const IntegrationSchema = Schema.Struct({
  branch: Schema.optional(Schema.NonEmptyString),
  strategy: Schema.optionalWith(IntegrationStrategy, { default: () => "merge" as const })
})

/**
 * `issues`: a file path (YAML/JSON list), or `{source: file, path}`, or
 * `{source: beads}` — live beads: the tracker CLI (`command`, default `bd`) is asked
 * for ready work as the run goes.
 */
const IssuesSource = Schema.Union(
  Schema.NonEmptyString,
  Schema.Struct({ source: Schema.Literal("file"), path: Schema.NonEmptyString }),
  Schema.Struct({
    source: Schema.Literal("beads"),
    command: Schema.optionalWith(Schema.NonEmptyString, { default: () => "bd" })
  })
).annotations(expects("a file path, {source: file, path: FILE} or {source: beads, command: bd}"))

/** `validation_triggers.epic_completion`: validation when an epic's children are all closed. */
const EpicCompletionSchema = Schema.Struct({
  failure_mode: Schema.optionalWith(Schema.Literal("continue", "abort"), { default: () => "continue" as const }),
  commands: Schema.optionalWith(Schema.Array(CommandItem), { default: () => [] })
})

const LoopConfigFile = Schema.Struct({
  repo: Schema.optionalWith(Schema.NonEmptyString, { default: () => "." }),
  issues: Schema.optional(IssuesSource),
  beads: Schema.optional(Schema.NonEmptyString),
  workdir: Schema.optionalWith(Schema.NonEmptyString, { default: () => ".runledger" }),
  max_agents: Schema.optionalWith(PositiveInt, { default: () => 1 }),
  kill_grace: Schema.optionalWith(DurationMs, { default: () => 5000 }),
  keep_worktrees: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  implementer: Actor,
  commands: Schema.optionalWith(Schema.Record({ key: Schema.String, value: CommandEntry }), { default: () => ({}) }),
  gate: Schema.optionalWith(
    Schema.Struct({
      commands: Schema.optionalWith(Schema.Array(CommandItem), { default: () => [] }),
      max_retries: Schema.optionalWith(NonNegativeInt, { default: () => 2 }),
      require_commit: Schema.optionalWith(Schema.Boolean, { default: () => true })
    }),
    { default: () => ({ commands: [], max_retries: 2, require_commit: true }) }
  ),
  validation_triggers: Schema.optional(Schema.Struct({
    session_end: Schema.optional(SessionEndSchema),
    run_end: Schema.optional(RunEndSchema),
    epic_completion: Schema.optional(EpicCompletionSchema)
  })),
  fixer: Schema.optional(Actor),
  reviewer: Schema.optional(Schema.Struct({
    command: Schema.NonEmptyString,
    timeout: Schema.optional(DurationMs),
    finding_threshold: Schema.optionalWith(Priority, { default: () => "P1" as const }),
    max_retries: Schema.optionalWith(NonNegativeInt, { default: () => 1 })
  })),
  finalize: Schema.optional(Actor),
  integration: Schema.optional(IntegrationSchema),
  /** The same section as a pipeline's (docs/telemetry.md); jsonl paths resolve against the config's directory. */
  telemetry: Schema.optional(TelemetrySettings)
})

/** One runnable command after resolution of named refs. */
export interface CommandDef {
  readonly ref: string
  readonly command: string
  readonly timeoutMs: number | undefined
  readonly allowFail: boolean
}

export interface ActorDef {
  readonly command: string
  readonly timeoutMs: number | undefined
}

/** Shared shape of the two validation triggers. */
export interface TriggerConfig {
  readonly failureMode: FailureMode
  /** Validations after the first one, with the fixer between them (remediate only). */
  readonly maxRetries: number
  readonly timeoutMs: number | undefined
  readonly commands: ReadonlyArray<CommandDef>
  readonly codeReview: boolean
}

export interface RunEndConfig extends TriggerConfig {
  readonly fireOn: FireOn
}

/** Where the issues come from: a file, a beads `issues.jsonl` snapshot, or live beads. */
export type IssueSourceConfig =
  | { readonly kind: "file" | "beads"; readonly path: string }
  | { readonly kind: "live-beads"; readonly command: string }

export interface EpicCompletionConfig {
  readonly failureMode: "continue" | "abort"
  readonly commands: ReadonlyArray<CommandDef>
}

/** The loop config with every default made explicit and every path absolute. */
export interface LoopConfig {
  /** The file it was loaded from (absolute), or `<inline>`. */
  readonly file: string
  readonly repo: string
  readonly issues: IssueSourceConfig | undefined
  readonly workdir: string
  readonly maxAgents: number
  readonly killGraceMs: number
  readonly keepWorktrees: boolean
  readonly implementer: ActorDef
  readonly commands: Readonly<Record<string, CommandDef>>
  readonly gate: {
    readonly commands: ReadonlyArray<CommandDef>
    readonly maxRetries: number
    readonly requireCommit: boolean
  }
  readonly sessionEnd: TriggerConfig | undefined
  readonly runEnd: RunEndConfig | undefined
  /** Validation run when an epic completes (live beads only). */
  readonly epicCompletion: EpicCompletionConfig | undefined
  readonly fixer: ActorDef | undefined
  readonly reviewer:
    | (ActorDef & { readonly findingThreshold: 0 | 1 | 2 | 3; readonly maxRetries: number })
    | undefined
  readonly finalize: ActorDef | undefined
  /**
   * How finished issues are merged into the run's integration branch. `branch`
   * undefined: `runledger/<run_id>/integration`; `{run_id}` in it is replaced.
   */
  readonly integration: { readonly branch: string | undefined; readonly strategy: IntegrationStrategy }
  /** The exporters the `telemetry` section asks for, if any. */
  readonly telemetry?: TelemetryRequest | undefined
}

const show = (value: unknown): string | undefined => {
  if (value === undefined) return undefined
  try {
    return typeof value === "string" ? (value.trim() === "" ? JSON.stringify(value) : value) : JSON.stringify(value)
  } catch {
    return String(value)
  }
}

const lookup = (root: unknown, path: ReadonlyArray<PropertyKey>): unknown => {
  let current: unknown = root
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined
    current = (current as Record<PropertyKey, unknown>)[key]
  }
  return current
}

type Decoded = typeof LoopConfigFile.Type

/** Cross-field rules the schema cannot express; returns the first violation. */
const resolve = (
  file: string,
  baseDir: string,
  raw: Decoded,
  join: (a: string, b: string) => string
): Either.Either<LoopConfig, LoopConfigError> => {
  const fail = (key: string, value: unknown, message: string): Either.Either<never, LoopConfigError> => {
    const shown = show(value)
    return Either.left(new LoopConfigError(shown === undefined ? { file, key, message } : { file, key, value: shown, message }))
  }

  const commands: Record<string, CommandDef> = {}
  for (const [name, entry] of Object.entries(raw.commands)) {
    commands[name] = typeof entry === "string"
      ? { ref: name, command: entry, timeoutMs: undefined, allowFail: false }
      : { ref: name, command: entry.command, timeoutMs: entry.timeout, allowFail: entry.allow_fail }
  }
  const known = Object.keys(commands).join(", ") || "(none)"
  /** Resolves a command list: names and `{ref}` point into `commands`, `{command}` is inline. */
  const refs = (
    key: string,
    stage: string,
    items: ReadonlyArray<CommandItem>
  ): Either.Either<Array<CommandDef>, LoopConfigError> => {
    const out: Array<CommandDef> = []
    for (const [i, item] of items.entries()) {
      if (typeof item !== "string" && item.command !== undefined) {
        out.push({
          ref: item.ref ?? `${stage}-${i + 1}`,
          command: item.command,
          timeoutMs: item.timeout,
          allowFail: item.allow_fail ?? false
        })
        continue
      }
      const name = typeof item === "string" ? item : item.ref
      const at = typeof item === "string" ? `${key}[${i}]` : `${key}[${i}].ref`
      if (name === undefined) {
        return fail(`${key}[${i}]`, item, "needs `ref` (the name of a command under `commands`) or `command`")
      }
      if (typeof item !== "string" && (item.timeout !== undefined || item.allow_fail !== undefined)) {
        return fail(
          `${key}[${i}]`,
          item,
          `timeout and allow_fail belong to the command's definition under \`commands.${name}\` (or give an inline \`command\`)`
        )
      }
      const def = commands[name]
      if (def === undefined) {
        return fail(at, name, `refers to undefined command "${name}"; defined commands: ${known}`)
      }
      out.push(def)
    }
    return Either.right(out)
  }

  const gate = refs("gate.commands", "gate", raw.gate.commands)
  if (Either.isLeft(gate)) return Either.left(gate.left)

  const trigger = (
    name: "session_end" | "run_end",
    t: typeof SessionEndSchema.Type | undefined
  ): Either.Either<TriggerConfig | undefined, LoopConfigError> => {
    if (t === undefined) return Either.right(undefined)
    const key = `validation_triggers.${name}`
    const cmds = refs(`${key}.commands`, name, t.commands)
    if (Either.isLeft(cmds)) return Either.left(cmds.left)
    if (t.failure_mode === "remediate") {
      if (t.max_retries === undefined) {
        return fail(`${key}.max_retries`, undefined, "is required when failure_mode is remediate")
      }
      if (raw.fixer === undefined) {
        return fail(`${key}.failure_mode`, "remediate", "remediate needs a fixer: add a top-level `fixer: {command: ...}`")
      }
    }
    const codeReview = t.code_review?.enabled ?? false
    if (codeReview && raw.reviewer === undefined) {
      return fail(`${key}.code_review.enabled`, true, "code review needs a top-level `reviewer: {command: ...}`")
    }
    const config: TriggerConfig = {
      failureMode: t.failure_mode,
      maxRetries: t.failure_mode === "remediate" ? t.max_retries ?? 0 : 0,
      timeoutMs: t.timeout,
      commands: cmds.right,
      codeReview
    }
    return Either.right(config)
  }

  const sessionEnd = trigger("session_end", raw.validation_triggers?.session_end)
  if (Either.isLeft(sessionEnd)) return Either.left(sessionEnd.left)
  const runEndRaw = raw.validation_triggers?.run_end
  const runEnd = trigger("run_end", runEndRaw)
  if (Either.isLeft(runEnd)) return Either.left(runEnd.left)

  if (raw.issues !== undefined && raw.beads !== undefined) {
    return fail("beads", raw.beads, "give either `issues` or `beads`, not both")
  }
  const abs = (p: string) => (p.startsWith("/") ? p : join(baseDir, p))
  const issues: IssueSourceConfig | undefined = raw.issues === undefined
    ? raw.beads !== undefined ? { kind: "beads", path: abs(raw.beads) } : undefined
    : typeof raw.issues === "string"
    ? { kind: "file", path: abs(raw.issues) }
    : raw.issues.source === "file"
    ? { kind: "file", path: abs(raw.issues.path) }
    : { kind: "live-beads", command: raw.issues.command }
  const epicRaw = raw.validation_triggers?.epic_completion
  let epicCompletion: EpicCompletionConfig | undefined
  if (epicRaw !== undefined) {
    if (issues?.kind !== "live-beads") {
      return fail(
        "validation_triggers.epic_completion",
        undefined,
        "runs when an epic's children are closed, which needs live beads: `issues: {source: beads}`"
      )
    }
    const cmds = refs("validation_triggers.epic_completion.commands", "epic_completion", epicRaw.commands)
    if (Either.isLeft(cmds)) return Either.left(cmds.left)
    epicCompletion = { failureMode: epicRaw.failure_mode, commands: cmds.right }
  }
  const actor = (a: { command: string; timeout?: number | undefined } | undefined): ActorDef | undefined =>
    a === undefined ? undefined : { command: a.command, timeoutMs: a.timeout }

  const telemetry = resolveTelemetry(raw.telemetry, process.env)
  if ("problem" in telemetry) return Either.left(new LoopConfigError({ file, key: telemetry.problem.key, message: telemetry.problem.message }))
  const config: LoopConfig = {
    telemetry: telemetry.request === undefined ? undefined : { ...telemetry.request, jsonl: telemetry.request.jsonl.map(abs) },
    file,
    repo: abs(raw.repo),
    issues,
    workdir: abs(raw.workdir),
    maxAgents: raw.max_agents,
    killGraceMs: raw.kill_grace,
    keepWorktrees: raw.keep_worktrees,
    implementer: actor(raw.implementer)!,
    commands,
    gate: { commands: gate.right, maxRetries: raw.gate.max_retries, requireCommit: raw.gate.require_commit },
    sessionEnd: sessionEnd.right,
    runEnd: runEnd.right === undefined || runEndRaw === undefined
      ? undefined
      : { ...runEnd.right, fireOn: runEndRaw.fire_on },
    epicCompletion,
    fixer: actor(raw.fixer),
    reviewer: raw.reviewer === undefined ? undefined : {
      command: raw.reviewer.command,
      timeoutMs: raw.reviewer.timeout,
      findingThreshold: Number(raw.reviewer.finding_threshold.slice(1)) as 0 | 1 | 2 | 3,
      maxRetries: raw.reviewer.max_retries
    },
    finalize: actor(raw.finalize),
    integration: { branch: raw.integration?.branch, strategy: raw.integration?.strategy ?? "merge" }
  }
  return Either.right(config)
}

const decodeFile = Schema.decodeUnknownEither(LoopConfigFile, { onExcessProperty: "error", errors: "first" })

const posixJoin = (a: string, b: string) => {
  const parts = `${a}/${b}`.split("/")
  const out: Array<string> = []
  for (const part of parts) {
    if (part === "" || part === ".") continue
    if (part === "..") out.pop()
    else out.push(part)
  }
  return "/" + out.join("/")
}

/**
 * Validates an already-parsed config document. `file` names it in errors; relative
 * paths resolve against `baseDir` (the config file's directory).
 */
export const parseLoopConfig = (
  raw: unknown,
  file: string,
  baseDir: string
): Either.Either<LoopConfig, LoopConfigError> => {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return Either.left(new LoopConfigError({ file, key: "(root)", value: String(raw), message: "expected a mapping" }))
  }
  if ("global_validation_commands" in raw) {
    return Either.left(
      new LoopConfigError({ file, key: "global_validation_commands", message: GLOBAL_VALIDATION_MIGRATION_ERROR })
    )
  }
  const decoded = decodeFile(raw)
  if (Either.isLeft(decoded)) {
    const problem = firstProblem(decoded.left.issue)
    const key = renderPath(problem.path)
    const message = problem.message
    const value = show(problem.value ?? lookup(raw, problem.path))
    return Either.left(
      new LoopConfigError(value === undefined ? { file, key, message } : { file, key, value, message })
    )
  }
  return resolve(file, baseDir, decoded.right, posixJoin)
}

/** Renders a config error as the one-line (or, for migrations, multi-line) CLI message. */
export const formatLoopConfigError = (error: LoopConfigError): string =>
  error.key === "global_validation_commands"
    ? `${error.file}: ${error.message}`
    : `${error.file}: ${error.key}${error.value === undefined ? "" : ` = ${error.value}`}: ${error.message}`

/** Reads and validates a loop config file (YAML or JSON). */
export const loadLoopConfig = Effect.fn("loop.loadLoopConfig")(function*(file: string) {
  const absolute = NodePath.resolve(file)
  const text = yield* Effect.try({
    try: () => NodeFs.readFileSync(absolute, "utf8"),
    catch: (e) =>
      new LoopConfigError({
        file: absolute,
        key: "(file)",
        message: `cannot read: ${e instanceof Error ? e.message : String(e)}`
      })
  })
  const raw = yield* Effect.try({
    try: () => YAML.parse(text) as unknown,
    catch: (e) => new LoopConfigError({ file: absolute, key: "(file)", message: `not valid YAML: ${String(e)}` })
  })
  return yield* parseLoopConfig(raw, absolute, NodePath.dirname(absolute))
})
