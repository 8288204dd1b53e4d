/**
 * `runledger mcp`: an MCP server over stdio with read-only tools on a Landscape. The
 * command is declared here; the server (and the MCP SDK) is loaded only when it runs.
 */
import * as Command from "@effect/cli/Command"
import { Effect } from "effect"
import { dbOption, dbUrl } from "./common.js"
import { exitOnError } from "./exit.js"
import { useRunHeap } from "./heap.js"

export const mcpCommand = Command.make("mcp", { db: dbOption }, ({ db }) =>
  Effect.gen(function*() {
    const { serveMcp } = yield* Effect.promise(() => import("../mcp/server.js"))
    yield* useRunHeap
    return yield* serveMcp({ url: dbUrl(db) })
  }).pipe(exitOnError)).pipe(
    Command.withDescription(
      "Serve a Model Context Protocol server on stdio (JSON-RPC on stdout, diagnostics on stderr) with read-only tools on a Landscape: " +
        "list_runs, run_summary, explain_row, find_rows, verify_export. Example: runledger mcp --db examples/demo/runs/demo.db. " +
        "Exit 2 when the Landscape does not exist."
    )
  )
