/**
 * `runledger mcp`: a Model Context Protocol server over stdio with read-only tools on
 * a Landscape, so that an assistant can answer questions such as "why did row 4,211
 * end in quarantine?" from the recorded trail. stdout carries JSON-RPC and nothing
 * else; diagnostics go to stderr. The Landscape is opened read-only (landscape/read-only.ts);
 * the tools reuse the explorer's paged reads, the lineage of `runledger explain` and
 * the verifier of `runledger verify`.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js"
import { Effect, Layer, Logger } from "effect"
import * as NodePath from "node:path"
import { z } from "zod"
import { narrate } from "../cli/explain.js"
import { explain } from "../landscape/lineage.js"
import { LandscapeReadOnly } from "../landscape/read-only.js"
import { verifyExport } from "../landscape/verify.js"
import { batchMemberships, isOutcome, listRunsPage, loopDetail, makeGraphCountCache, rowsPage, runDetail, runKindOf } from "../landscape/explorer-queries.js"
import { VERSION } from "../cli/version.js"

export interface McpOptions {
  readonly url: string
  readonly env?: Readonly<Record<string, string | undefined>>
}

type ToolResult = { content: Array<{ type: "text"; text: string }>; isError?: boolean; structuredContent?: Record<string, unknown> }

const ok = (value: Record<string, unknown>, text?: string): ToolResult => ({
  content: [{ type: "text", text: text === undefined ? JSON.stringify(value, null, 2) : `${text}\n\n${JSON.stringify(value, null, 2)}` }],
  structuredContent: value
})

const failure = (message: string): ToolResult => ({ content: [{ type: "text", text: message }], isError: true })

const messageOf = (e: unknown): string => {
  const m = (e as { message?: unknown } | null)?.message
  return typeof m === "string" && m !== "" ? m : String(e)
}

/** Effect's log lines (the default logger writes them on stdout) go to stderr: stdout is the protocol's. */
const logToStderr = Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))

/** Serves until stdin closes. A Landscape that does not exist fails before anything is served. */
export const serveMcp = (options: McpOptions) =>
  Effect.gen(function*() {
    const env = options.env ?? process.env
    const context = yield* Layer.build(LandscapeReadOnly(options.url, env))
    const cache = makeGraphCountCache()
    /** One tool call: its failures (typed or not) become an error result naming the cause. */
    const call = <A>(effect: Effect.Effect<A, unknown, Layer.Layer.Success<ReturnType<typeof LandscapeReadOnly>>>, done: (a: A) => ToolResult) =>
      Effect.runPromise(
        effect.pipe(
          Effect.provide(context),
          Effect.provide(logToStderr),
          Effect.match({ onFailure: (e) => failure(messageOf(e)), onSuccess: done }),
          Effect.catchAllDefect((d) => Effect.succeed(failure(`internal error: ${messageOf(d)}`)))
        )
      )

    const server = new McpServer({ name: "runledger", version: VERSION }, {
      instructions: "Read-only tools over a runledger Landscape (the audit database of pipeline runs and issue loops). " +
        "Start with list_runs, then run_summary; explain_row answers why a row ended where it did; find_rows pages through rows by outcome, sink or field value."
    })

    server.registerTool("list_runs", {
      description: "List the runs of the Landscape (pipelines and issue loops), newest first, with status, duration and counts. Paged.",
      inputSchema: {
        status: z.enum(["running", "completed", "failed", "interrupted"]).optional().describe("Only runs with this status"),
        kind: z.enum(["pipeline", "loop"]).optional().describe("Only pipeline runs or only loop runs"),
        limit: z.number().int().min(1).max(500).default(50).describe("Runs per page"),
        offset: z.number().int().min(0).default(0).describe("Runs to skip")
      },
      annotations: { readOnlyHint: true }
    }, (args) =>
      call(listRunsPage({ status: args.status, kind: args.kind, limit: args.limit, offset: args.offset }, cache), (r) =>
        ok({ ...r, limit: args.limit, offset: args.offset })))

    server.registerTool("run_summary", {
      description: "One run: status, times, row count, terminal outcome counts, outcomes per sink, nodes and edges with token counts, export status, error. " +
        "For a loop run: its issues, stages and integration result.",
      inputSchema: { run_id: z.string().min(1).describe("The run id (from list_runs)") },
      annotations: { readOnlyHint: true }
    }, (args) =>
      call(
        Effect.gen(function*() {
          const kind = yield* runKindOf(args.run_id)
          if (kind === undefined) return yield* Effect.fail(new Error(`no run ${args.run_id} in this Landscape; list_runs shows the recorded ones`))
          if (kind === "loop") {
            const d = (yield* loopDetail(args.run_id))!
            return { kind, ...d, commands: undefined, command_count: [...d.commands.values()].reduce((n, c) => n + c.length, 0) } as Record<string, unknown>
          }
          const d = (yield* runDetail(args.run_id, cache))!
          const { settings_json: _settings, ...run } = d.run
          return {
            kind,
            run,
            rows: d.rows,
            outcomes: d.outcomes,
            sinks: d.sinks,
            nodes: d.nodes.map(({ config_json: _c, ...n }) => ({ ...n, tokens: d.counts.nodes[n.node_id] ?? 0 })),
            edges: d.edges.map((e) => ({ ...e, tokens: d.counts.edges[e.edge_id] ?? null })),
            artifacts: d.artifacts,
            batch_count: d.batch_count
          } as Record<string, unknown>
        }),
        (r) => ok(r)
      ))

    server.registerTool("explain_row", {
      description: "The lineage of one row or token of a pipeline run (the same as `runledger explain`): the source row, every node state with input/output hashes, " +
        "routing decisions with the condition and its value, validation and transform errors, batches, the outcome with its reason, the sink write. " +
        "Give one of row_index (0-based position in the source), row_id or token_id. The text starts with a narrative of why the row ended where it did.",
      inputSchema: {
        run_id: z.string().min(1).default("latest").describe("The run id, or latest"),
        row_index: z.number().int().min(0).optional().describe("0-based index of the row in the source"),
        row_id: z.string().optional().describe("The row id"),
        token_id: z.string().optional().describe("A token id (picks that token and its row)"),
        sink: z.string().optional().describe("With a row whose tokens reached several sinks: the token that reached this sink")
      },
      annotations: { readOnlyHint: true }
    }, (args) => {
      const given = [args.row_index, args.row_id, args.token_id].filter((v) => v !== undefined).length
      if (given === 0) return Promise.resolve(failure("give one of row_index, row_id or token_id"))
      if (args.row_index !== undefined && args.row_id !== undefined) return Promise.resolve(failure("give row_index or row_id, not both"))
      const row = args.row_index !== undefined ? String(args.row_index) : args.row_id
      return call(
        Effect.gen(function*() {
          const lineage = yield* explain({
            runId: args.run_id,
            ...(row === undefined ? {} : { row }),
            ...(args.token_id === undefined ? {} : { token: args.token_id }),
            ...(args.sink === undefined ? {} : { sink: args.sink })
          })
          const memberships = yield* batchMemberships(lineage.path)
          return { lineage, memberships }
        }),
        ({ lineage, memberships }) => ok({ ...lineage, batch_memberships: memberships } as unknown as Record<string, unknown>, narrate(lineage))
      )
    })

    server.registerTool("find_rows", {
      description: "Rows of a pipeline run, a page at a time in source order, filtered by terminal outcome (e.g. QUARANTINED), by sink, and/or by the value of a " +
        "top-level field of the source row (compared as text). Each row comes with its tokens' outcomes. Continue with from = next.",
      inputSchema: {
        run_id: z.string().min(1).describe("The run id"),
        outcome: z.string().optional().describe("A terminal outcome: COMPLETED, ROUTED, QUARANTINED, FAILED, FORKED, COALESCED, EXPANDED, CONSUMED_IN_BATCH, DIVERTED"),
        sink: z.string().optional().describe("Only rows with a token that reached this sink"),
        field: z.string().optional().describe("A top-level field of the source row"),
        value: z.string().optional().describe("With field: the value it must have (as text)"),
        from: z.number().int().min(0).default(0).describe("First row index of the page (the previous page's next)"),
        limit: z.number().int().min(1).max(500).default(50).describe("Rows per page")
      },
      annotations: { readOnlyHint: true }
    }, (args) => {
      if (args.outcome !== undefined && !isOutcome(args.outcome)) return Promise.resolve(failure(`unknown outcome ${args.outcome}`))
      if (args.value !== undefined && args.field === undefined) return Promise.resolve(failure("value needs field"))
      return call(
        Effect.gen(function*() {
          const kind = yield* runKindOf(args.run_id)
          if (kind !== "pipeline") {
            return yield* Effect.fail(new Error(kind === "loop" ? `${args.run_id} is a loop run: it has no rows` : `no run ${args.run_id} in this Landscape`))
          }
          return yield* rowsPage(args.run_id, {
            outcome: args.outcome as Parameters<typeof rowsPage>[1]["outcome"],
            sink: args.sink,
            field: args.field === undefined ? undefined : { name: args.field, value: args.value ?? "" },
            from: args.from,
            limit: args.limit
          })
        }),
        (page) => ok({ rows: page.rows.map((r) => ({ ...r, source_data: JSON.parse(r.source_data_json), source_data_json: undefined })), next: page.next })
      )
    })

    server.registerTool("verify_export", {
      description: "Verify a signed JSON export file (as `runledger verify`): every record's signature, the order, the count and the manifest. " +
        "Needs RUNLEDGER_SIGNING_KEY where the server runs. Reports the first bad record and why.",
      inputSchema: { path: z.string().min(1).describe("Path of the export file (relative to the server's working directory)") },
      annotations: { readOnlyHint: true }
    }, (args) =>
      Effect.runPromise(
        verifyExport(NodePath.resolve(args.path)).pipe(
          Effect.provide(logToStderr),
          Effect.match({
            onSuccess: (summary) => ok({ valid: true, ...summary }, `valid: ${summary.record_count} records of run ${summary.run_id}`),
            onFailure: (e) =>
              e._tag === "SigningKeyMissing"
                ? failure(e.message)
                : ok({ valid: false, path: e.path, reason: e.reason, message: e.message, position: e.position ?? null }, `not valid: ${e.message}`)
          })
        )
      ))

    const transport = new StdioServerTransport()
    yield* Effect.promise(() => server.connect(transport))
    process.stderr.write(`runledger mcp: serving the Landscape ${options.url} read-only on stdio\n`)
    // Until the client closes stdin.
    yield* Effect.async<void>((resume) => {
      const done = () => resume(Effect.void)
      process.stdin.once("end", done)
      process.stdin.once("close", done)
      server.server.onclose = done
    })
    yield* Effect.promise(() => server.close())
  }).pipe(Effect.scoped, Effect.provide(logToStderr))
