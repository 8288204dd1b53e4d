import type { CommandExecutor } from "@effect/platform"
import { Effect, Either, Schema } from "effect"
import type { ActorDef } from "./config.js"
import { type CommandResult, type Finding, type ReviewOutcome, runCommand, type StageContext } from "./results.js"

const PriorityValue = Schema.Union(
  Schema.Int.pipe(Schema.between(0, 3)),
  Schema.transform(Schema.Literal("P0", "P1", "P2", "P3"), Schema.Int, {
    strict: true,
    decode: (p) => Number(p.slice(1)),
    encode: (n) => `P${n}` as "P0"
  })
)

const NullableInt = Schema.optionalWith(Schema.NullOr(Schema.Int), { default: () => null })

const ReviewerOutput = Schema.Struct({
  verdict: Schema.String,
  findings: Schema.optionalWith(
    Schema.Array(Schema.Struct({
      file: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null }),
      line_start: NullableInt,
      line_end: NullableInt,
      priority: PriorityValue,
      title: Schema.String,
      body: Schema.optionalWith(Schema.String, { default: () => "" })
    })),
    { default: () => [] }
  )
})

const decode = Schema.decodeUnknownEither(ReviewerOutput)

/** The JSON document in a reviewer's stdout: the whole of it, or its last `{...}` block. */
const extractJson = (stdout: string): unknown => {
  const text = stdout.trim()
  try {
    return JSON.parse(text)
  } catch {
    // fall through: tolerate log lines around the document
  }
  const lines = text.split("\n")
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!lines[i]!.trimStart().startsWith("{")) continue
    try {
      return JSON.parse(lines.slice(i).join("\n"))
    } catch {
      continue
    }
  }
  throw new Error("no JSON document on stdout")
}

/** Parses reviewer output; a finding with priority ≤ threshold (P0 is the most severe) blocks. */
export const parseReview = (stdout: string, threshold: number, command: CommandResult | null = null): ReviewOutcome => {
  let raw: unknown
  try {
    raw = extractJson(stdout)
  } catch (e) {
    return { status: "parse_error", verdict: null, findings: [], blocking: [], error: String(e), command }
  }
  const decoded = decode(raw)
  if (Either.isLeft(decoded)) {
    return {
      status: "parse_error",
      verdict: null,
      findings: [],
      blocking: [],
      error: `reviewer output does not match {verdict, findings}: ${decoded.left.message}`,
      command
    }
  }
  const findings: Array<Finding> = decoded.right.findings.map((f) => ({ ...f }))
  const blocking = findings.filter((f) => f.priority <= threshold)
  return {
    status: blocking.length > 0 ? "blocked" : "approved",
    verdict: decoded.right.verdict,
    findings,
    blocking,
    error: null,
    command
  }
}

/**
 * Runs the reviewer command and parses its verdict. A failed process is a parse error.
 * The reviewer gets `STAGE` (from runCommand) and `ATTEMPT`/`MAX_ATTEMPTS`: the review
 * round and its bound as the caller passes them, `1`/`1` otherwise (run_end).
 */
export const runReviewer = (
  ctx: StageContext,
  stage: string,
  reviewer: ActorDef & { readonly findingThreshold: number },
  env: Readonly<Record<string, string>>
): Effect.Effect<ReviewOutcome, never, CommandExecutor.CommandExecutor> =>
  Effect.map(
    runCommand(ctx, stage, {
      ref: "reviewer",
      command: reviewer.command,
      timeoutMs: reviewer.timeoutMs,
      env: { ATTEMPT: "1", MAX_ATTEMPTS: "1", ...env },
      keepStdout: true
    }),
    (result) => {
      if (result.exit_code !== 0) {
        return {
          status: "parse_error" as const,
          verdict: null,
          findings: [],
          blocking: [],
          error: result.timed_out ? "reviewer timed out" : `reviewer exited with ${result.exit_code ?? "a signal"}`,
          command: result
        }
      }
      return parseReview(result.stdout ?? "", reviewer.findingThreshold, result)
    }
  )

/** Findings as text for the implementer's FEEDBACK_FILE. */
export const findingsText = (findings: ReadonlyArray<Finding>): string =>
  findings
    .map((f) =>
      `- [P${f.priority}] ${f.title}${f.file === null ? "" : ` (${f.file}${f.line_start === null ? "" : `:${f.line_start}`}${
        f.line_end === null || f.line_end === f.line_start ? "" : `-${f.line_end}`
      })`}\n  ${f.body.replace(/\n/g, "\n  ")}`
    )
    .join("\n")
