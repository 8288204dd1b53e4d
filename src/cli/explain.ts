import type { RunId } from "../core/ids.js"
import { ResumeStore, type RunAttemptView } from "../services/resume-store.js"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Either, Option } from "effect"
import {
  explain,
  type Lineage,
  type LineageCall,
  type LineageOutcome,
  type LineagePayload,
  type LineageQuery,
  type LineageRouting,
  type LineageStep,
  type LineageToken
} from "../landscape/lineage.js"
import { dbOption, dbUrl, jsonOption, printHuman, printJson, requireLandscape } from "./common.js"
import { exitOnError } from "./exit.js"
import { landscapeRead } from "./layers.js"

const runOption = Options.text("run").pipe(
  Options.withAlias("r"),
  Options.withPseudoName("ID|latest"),
  Options.withDescription("The run to look in: a run id, or 'latest' for the most recently started run")
)

const rowOption = Options.text("row").pipe(
  Options.withPseudoName("ROW"),
  Options.withDescription(
    "The source row: its row id, or its 0-based index in the source (rows.row_index). " +
      "Explains the token of the row that reached an outcome"
  )
)

const tokenOption = Options.text("token").pipe(
  Options.withAlias("t"),
  Options.withPseudoName("TOKEN"),
  Options.withDescription("A token id: explains that token, with the ancestors it was derived from")
)

/** ELSPETH opens a TUI unless given --no-tui; runledger always prints text (or --json). */
const noTuiOption = Options.boolean("no-tui").pipe(
  Options.withDescription("Accepted for ELSPETH compatibility and changes nothing: explain always prints text (or --json)")
)

const sinkOption = Options.text("sink").pipe(
  Options.withPseudoName("NAME"),
  Options.withDescription(
    "With --row: the token of the row that reached this sink, when several tokens of the row " +
      "(explode or fork children) reached an outcome"
  ),
  Options.optional
)

// ---------------------------------------------------------------------------
// The narrative

const short = (hash: string | null): string => (hash === null ? "-" : hash.slice(0, 12))

const compact = (value: unknown): string => {
  const text = typeof value === "string" ? value : JSON.stringify(value)
  return text.length > 300 ? `${text.slice(0, 297)}...` : text
}

const field = (value: unknown, key: string): unknown =>
  value !== null && typeof value === "object" && key in value ? (value as Record<string, unknown>)[key] : undefined

const errorText = (error: unknown): string => {
  const message = field(error, "message")
  return typeof message === "string" ? message : compact(error)
}

const duration = (ms: number | null): string =>
  ms === null ? "" : ms < 1 ? `${ms.toFixed(3)} ms` : ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`

const destinationOf = (r: LineageRouting): string =>
  field(r.reason, "destination") === "continue" ? `continue (next: ${r.destination})` : `${r.destination_type} ${r.destination}`

/** `gate 'g': row['amount'] > 1000 → 'true' → sink high_values`, or the diverted error. */
const routingLine = (step: LineageStep, r: LineageRouting): string => {
  const condition = field(r.reason, "condition")
  if (typeof condition === "string") {
    const result = field(r.reason, "result")
    const branch = field(r.reason, "branch")
    const via = typeof branch === "string" ? ` → fork branch ${branch}` : ""
    return `${step.node.node_type} '${step.node.name}': ${condition} → '${String(result ?? r.edge_label)}'${via} → ${destinationOf(r)}`
  }
  if (field(r.reason, "on_write_failure") !== undefined) {
    return `${step.node.node_type} '${step.node.name}' could not write the row → on_write_failure → ${destinationOf(r)} (${r.mode})`
  }
  const onError = field(r.reason, "on_error")
  if (onError !== undefined) {
    return `${step.node.node_type} '${step.node.name}' error → on_error → ${destinationOf(r)} (${r.mode})`
  }
  return `${step.node.node_type} '${step.node.name}' → '${r.edge_label}' → ${destinationOf(r)} (${r.mode})`
}

const outcomeText = (o: LineageOutcome | null): string =>
  o === null ? "no outcome yet" : `${o.outcome}${o.sink_name === null ? "" : ` → sink ${o.sink_name}`}`

const treeLines = (tokens: ReadonlyArray<LineageToken>, selected: string, indent: string, root: boolean, lines: Array<string>) => {
  tokens.forEach((t, i) => {
    const last = i === tokens.length - 1
    const branch = root ? "" : last ? "└─ " : "├─ "
    const tags = [
      t.branch_name === null ? "" : `branch ${t.branch_name}`,
      t.expand_group_id === null ? "" : `expand ${t.expand_group_id}`,
      t.fork_group_id === null ? "" : `fork ${t.fork_group_id}`,
      t.join_group_id === null ? "" : `join ${t.join_group_id}`
    ].filter((s) => s !== "")
    lines.push(
      `${indent}${branch}${t.token_id}  ${outcomeText(t.outcome)}${tags.length === 0 ? "" : `  [${tags.join(", ")}]`}${
        t.token_id === selected ? "   ← explained" : ""
      }`
    )
    treeLines(t.children, selected, root ? indent : indent + (last ? "   " : "│  "), false, lines)
  })
}

/** The prompt of a chat request (its last user message), else the request body. */
const promptOf = (request: unknown): string => {
  const body = field(request, "body")
  const messages = field(body, "messages")
  if (Array.isArray(messages)) {
    const user = messages.filter((m) => field(m, "role") === "user").pop()
    const content = field(user, "content")
    if (typeof content === "string") return content
  }
  return compact(body ?? request)
}

/** The text of a chat reply (`choices[0].message.content`), else the reply body. */
const replyOf = (response: unknown): string => {
  const choices = field(response, "choices")
  const content = Array.isArray(choices) ? field(field(choices[0], "message"), "content") : undefined
  return typeof content === "string" ? content : compact(response)
}

const payloadLine = (label: string, p: LineagePayload | null, show: (v: unknown) => string): string | undefined => {
  if (p === null) return undefined
  if (p.status === "stored") return `${label}: ${compact(show(p.value)).replace(/\s*\n\s*/g, " ⏎ ")}`
  return `${label}: ${p.status === "purged" ? "payload purged" : `unavailable (${p.note ?? "?"})`} (hash ${short(p.hash)})`
}

const callLines = (c: LineageCall): Array<string> => {
  const usage = field(c.usage, "prompt_tokens") !== undefined
    ? `, ${String(field(c.usage, "prompt_tokens"))}+${String(field(c.usage, "completion_tokens") ?? "?")} tokens`
    : ""
  const answered = c.response_model === null ? "" : `, answered by ${c.response_model}`
  const result = c.error_class === null ? `${c.http_status ?? "-"}` : `${c.error_class}${c.http_status === null ? "" : ` (${c.http_status})`}`
  const verify = field(c.verify, "mode") === "verify"
    ? `  [verify: response ${field(c.verify, "response_match") === true ? "matches" : "differs"}, decision ${
      field(c.verify, "decision_match") === true ? "matches" : "differs"
    }]`
    : field(c.verify, "mode") === "replay"
    ? "  [replayed]"
    : ""
  const out = [
    `      call ${c.call_type} attempt ${c.attempt ?? "?"}  ${c.provider ?? ""}${c.model === null ? "" : ` ${c.model}`} → ${result}${
      c.latency_ms === null ? "" : `  ${duration(c.latency_ms)}`
    }${answered}${usage}${verify}`
  ]
  if (c.error_class !== null && c.error !== null) out.push(`        error: ${errorText(c.error)}`)
  const prompt = payloadLine(c.call_type === "llm" ? "prompt" : "request", c.request, c.call_type === "llm" ? promptOf : (v) => compact(v))
  if (prompt !== undefined) out.push(`        ${prompt}`)
  const reply = payloadLine(c.call_type === "llm" ? "reply" : "response", c.response, c.call_type === "llm" ? replyOf : (v) => compact(v))
  if (reply !== undefined) out.push(`        ${reply}`)
  return out
}

const countTokens = (tokens: ReadonlyArray<LineageToken>): number =>
  tokens.reduce((n, t) => n + 1 + countTokens(t.children), 0)

/** The lineage as a story: source row → each step → the outcome and the sink. */
/** The attempts of a run, when there was more than one (a resumed run). */
const historyText = (history: ReadonlyArray<RunAttemptView>): string =>
  history.length <= 1
    ? ""
    : "\n\nrun history\n" + history.map((a) =>
      `  attempt ${a.attempt} ${a.kind}${a.from_checkpoint === null ? "" : ` from checkpoint ${a.from_checkpoint}`} at ${a.started_at} (pid ${a.owner_pid ?? "?"}): ${a.status}${a.reason === null ? "" : ` (${a.reason})`}${a.ended_at === null ? "" : ` at ${a.ended_at}`}`
    ).join("\n")

export const narrate = (l: Lineage): string => {
  const lines: Array<string> = []
  lines.push(`run ${l.run.run_id} (${l.run.status})`)
  lines.push(
    `source row ${l.row.row_index} (${l.row.row_id}) read by ${l.row.source.node_type} '${l.row.source.name}' (${l.row.source.plugin})`
  )
  lines.push(`  data ${compact(l.row.data)}`)
  lines.push(`  hash ${l.row.hash}`)
  for (const v of l.validation_errors) {
    lines.push(`  invalid at '${v.node}' (schema ${v.schema_mode}): ${v.error} → ${v.destination}`)
  }
  if (countTokens(l.tokens) > 1) {
    lines.push("", "tokens")
    treeLines(l.tokens, l.token_id, "  ", true, lines)
  }
  lines.push("", `path of token ${l.token_id}`)
  let current = l.path[0]
  if (l.path.length > 1) lines.push(`  token ${current}`)
  const errorsByState = new Map(l.transform_errors.flatMap((e) => (e.state_id === null ? [] : [[e.state_id, e] as const])))
  for (const s of l.steps) {
    if (s.token_id !== current) {
      current = s.token_id
      lines.push(`  token ${current}`)
    }
    const attempt = s.attempt > 1 ? ` attempt ${s.attempt}` : ""
    lines.push(
      `  step ${s.step_index}  ${s.node.node_type} '${s.node.name}' (${s.node.plugin})${attempt}  ${s.status}` +
        `  in ${short(s.input_hash)} → out ${short(s.output_hash)}${s.duration_ms === null ? "" : `  ${duration(s.duration_ms)}`}`
    )
    if (s.error !== null) lines.push(`      error: ${errorText(s.error)}`)
    const te = errorsByState.get(s.state_id)
    if (te !== undefined) lines.push(`      transform error recorded (${te.error_id}), destination ${te.destination}`)
    for (const c of l.calls) if (c.state_id === s.state_id) lines.push(...callLines(c))
    for (const r of s.routing) lines.push(`      ${routingLine(s, r)}`)
  }
  if (l.steps.length === 0) lines.push("  (no node states: the row never entered the pipeline)")
  lines.push("", `outcome ${outcomeText(l.outcome)}`)
  const reason = l.outcome === null ? undefined : field(l.outcome.context, "reason")
  if (typeof reason === "string") lines.push(`  reason ${reason}`)
  if (l.outcome?.outcome === "DIVERTED") {
    const from = field(l.outcome.context, "sink")
    const to = field(l.outcome.context, "destination")
    if (typeof from === "string" && typeof to === "string") {
      lines.push(`  diverted from sink ${from} ${to === "discard" ? "and discarded (on_write_failure: discard)" : `to its failsink ${to}`}`)
    }
  }
  if (l.sink !== null) {
    for (const a of l.sink.artifacts) lines.push(`  wrote ${a.path_or_uri} (${a.size_bytes} bytes, ${short(a.content_hash)})`)
  }
  return lines.join("\n")
}

// ---------------------------------------------------------------------------
// The command

export const explainCommand = Command.make(
  "explain",
  {
    db: dbOption,
    run: runOption,
    target: Options.orElseEither(rowOption, tokenOption),
    sink: sinkOption,
    payloadDir: Options.text("payload-dir").pipe(
      Options.withPseudoName("DIR"),
      Options.withDescription("Where the run's call payloads are (default: the run's payload_store.base_path)"),
      Options.optional
    ),
    json: jsonOption,
    noTui: noTuiOption
  },
  ({ db, json, payloadDir, run, sink, target }) => {
    const url = dbUrl(db)
    const query: LineageQuery = {
      runId: run,
      ...Either.match(target, { onLeft: (row) => ({ row }), onRight: (token) => ({ token }) }),
      ...Option.match(sink, { onNone: () => ({}), onSome: (name) => ({ sink: name }) }),
      ...Option.match(payloadDir, { onNone: () => ({}), onSome: (dir) => ({ payloadDir: dir }) })
    }
    return requireLandscape(url).pipe(
      Effect.zipRight(
        Effect.gen(function*() {
          const lineage = yield* explain(query)
          // The run's history: its start, each crash or Ctrl-C, each resume.
          const history = yield* Effect.flatMap(ResumeStore, (store) => store.attempts(lineage.run.run_id as RunId))
          return { lineage, history }
        }).pipe(Effect.provide(landscapeRead(url)))
      ),
      Effect.flatMap(({ history, lineage }) =>
        json ? printJson({ ...lineage, run_history: history }) : printHuman(narrate(lineage) + historyText(history))
      ),
      // With --json the candidates of an ambiguous row are the document on stdout.
      Effect.tapErrorTag("AmbiguousLineage", (e) =>
        json
          ? printJson({ error: e._tag, message: e.message, run_id: e.runId, row_id: e.rowId, row_index: e.rowIndex, candidates: e.candidates })
          : Effect.void),
      exitOnError
    )
  }
).pipe(
  Command.withDescription(
    "Explain why a row reached its destination: the source row, every step it went through (status, input/output " +
      "hashes, duration), each routing decision with its condition and result, errors, and the final outcome and " +
      "sink. Give --row (row id or 0-based source index) or --token. When several tokens of a row reached an " +
      "outcome (explode or fork children), --sink picks one; without it the candidates are listed and the exit " +
      "code is 2. Exit 0 found, 2 unknown run/row/token, ambiguous row or bad --db."
  )
)
