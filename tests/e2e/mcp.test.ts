/**
 * `runledger mcp` driven by the MCP SDK's own client over stdio: the client spawns
 * `node dist/bin.js mcp --db …` on a Landscape a real demo run wrote, lists the tools,
 * calls each, and answers "why did row N end in quarantine?" from explain_row alone.
 * Everything on the server's stdout must be JSON-RPC (the client reports anything else).
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, runCli, runCliIn } from "../support/cli.js"
import { demoWorkspace, type DemoWorkspace } from "../support/explorer.js"

const KEY = "mcp-test-signing-key"

interface ToolResult {
  readonly content: ReadonlyArray<{ type: string; text: string }>
  readonly structuredContent?: Record<string, unknown>
  readonly isError?: boolean
}

describe("runledger mcp (stdio, the SDK's client)", () => {
  let ws: DemoWorkspace
  let client: Client
  let transport: StdioClientTransport
  const protocolErrors: Array<string> = []
  let stderr = ""

  beforeAll(async () => {
    ws = await demoWorkspace()
    const exported = runCli(["export", "--db", ws.db, "--run", ws.runId, "--out", "signed.json", "--sign"], {
      cwd: ws.dir,
      env: { RUNLEDGER_SIGNING_KEY: KEY }
    })
    expect(exported.status, exported.stderr).toBe(0)
    const records = JSON.parse(readFileSync(join(ws.dir, "signed.json"), "utf8")) as Array<Record<string, unknown>>
    const row = records.find((r) => r.record_type === "row")!
    row.source_data_hash = "0".repeat(64)
    writeFileSync(join(ws.dir, "tampered.json"), JSON.stringify(records))

    transport = new StdioClientTransport({
      command: process.execPath,
      args: [BIN, "mcp", "--db", ws.db],
      cwd: ws.dir,
      env: { ...(process.env as Record<string, string>), RUNLEDGER_SIGNING_KEY: KEY },
      stderr: "pipe"
    })
    transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString()))
    client = new Client({ name: "runledger-test", version: "1.0.0" })
    client.onerror = (e) => protocolErrors.push(String(e))
    await client.connect(transport)
  }, 60_000)

  afterAll(async () => {
    await client?.close()
  })

  const call = async (name: string, args: Record<string, unknown>) => (await client.callTool({ name, arguments: args })) as unknown as ToolResult

  it("lists the five read-only tools, each with a description and an input schema", async () => {
    const { tools } = await client.listTools()
    expect(tools.map((t) => t.name).sort()).toEqual(["explain_row", "find_rows", "list_runs", "run_summary", "verify_export"])
    for (const t of tools) {
      expect(t.description?.length ?? 0).toBeGreaterThan(30)
      expect(t.inputSchema.type).toBe("object")
      expect(t.annotations?.readOnlyHint).toBe(true)
    }
    const explain = tools.find((t) => t.name === "explain_row")!
    expect(Object.keys(explain.inputSchema.properties ?? {})).toEqual(expect.arrayContaining(["run_id", "row_index", "row_id", "token_id"]))
  })

  it("list_runs and run_summary", async () => {
    const runs = await call("list_runs", {})
    expect(runs.isError).toBeFalsy()
    const listed = runs.structuredContent as { total: number; runs: ReadonlyArray<{ run_id: string; kind: string; counts: Record<string, number> }> }
    expect(listed.total).toBe(1)
    expect(listed.runs[0]).toMatchObject({ run_id: ws.runId, kind: "pipeline", counts: { rows: 10, QUARANTINED: 1, ROUTED: 9 } })
    const summary = (await call("run_summary", { run_id: ws.runId })).structuredContent as {
      rows: number
      sinks: ReadonlyArray<{ sink_name: string; outcome: string; n: number }>
      nodes: ReadonlyArray<{ name: string; tokens: number }>
    }
    expect(summary.rows).toBe(10)
    expect(summary.sinks).toContainEqual({ sink_name: "quarantine", outcome: "QUARANTINED", n: 1 })
    expect(summary.nodes.find((n) => n.name === "screen_notes")?.tokens).toBe(9)
    const unknown = await call("run_summary", { run_id: "run_nope" })
    expect(unknown.isError).toBe(true)
    expect(unknown.content[0]!.text).toContain("run_nope")
  })

  it("find_rows by outcome, sink and field value, paged", async () => {
    const quarantined = (await call("find_rows", { run_id: ws.runId, outcome: "QUARANTINED" })).structuredContent as {
      rows: ReadonlyArray<{ row_index: number; source_data: Record<string, unknown> }>
      next: number | null
    }
    expect(quarantined.rows.map((r) => r.row_index)).toEqual([3])
    expect(quarantined.rows[0]!.source_data).toMatchObject({ customer: "Diana", amount: "abc" })
    const page = (await call("find_rows", { run_id: ws.runId, sink: "output", limit: 2 })).structuredContent as { rows: ReadonlyArray<{ row_index: number }>; next: number | null }
    expect(page.rows.map((r) => r.row_index)).toEqual([0, 2])
    const more = (await call("find_rows", { run_id: ws.runId, sink: "output", limit: 2, from: page.next })).structuredContent as { rows: ReadonlyArray<{ row_index: number }> }
    expect(more.rows.map((r) => r.row_index)).toEqual([6, 8])
    const byField = (await call("find_rows", { run_id: ws.runId, field: "category", value: "corporate" })).structuredContent as { rows: ReadonlyArray<{ row_index: number }> }
    expect(byField.rows.map((r) => r.row_index)).toEqual([5, 9])
    expect((await call("find_rows", { run_id: ws.runId, outcome: "LOST" })).isError).toBe(true)
  })

  it("answers \"why did row 3 end in quarantine?\" from explain_row", async () => {
    const r = await call("explain_row", { run_id: ws.runId, row_index: 3 })
    expect(r.isError).toBeFalsy()
    const lineage = r.structuredContent as {
      outcome: { outcome: string; sink_name: string; context: { reason: string } }
      validation_errors: ReadonlyArray<{ node: string; error: string; destination: string }>
    }
    // The answer: the source's schema rejected the amount, so the row went to the quarantine sink.
    expect(lineage.outcome).toMatchObject({ outcome: "QUARANTINED", sink_name: "quarantine", context: { reason: "validation_failed" } })
    expect(lineage.validation_errors).toEqual([expect.objectContaining({ node: "source", error: "amount: expected float, got 'abc'", destination: "quarantine" })])
    const narrative = r.content[0]!.text
    expect(narrative).toContain("invalid at 'source' (schema fixed): amount: expected float, got 'abc' → quarantine")
    expect(narrative).toMatch(/outcome QUARANTINED/)
    const byToken = await call("explain_row", { run_id: ws.runId, token_id: (r.structuredContent as { token_id: string }).token_id })
    expect((byToken.structuredContent as { row: { row_index: number } }).row.row_index).toBe(3)
    const missing = await call("explain_row", { run_id: ws.runId, row_index: 99 })
    expect(missing.isError).toBe(true)
    expect(missing.content[0]!.text).toContain("valid row indexes")
    expect((await call("explain_row", { run_id: ws.runId })).isError).toBe(true)
  })

  it("verify_export: a signed export is valid, a tampered one is not (with the record named)", async () => {
    const good = await call("verify_export", { path: "signed.json" })
    expect(good.structuredContent).toMatchObject({ valid: true, run_id: ws.runId })
    const bad = await call("verify_export", { path: "tampered.json" })
    expect(bad.structuredContent).toMatchObject({ valid: false, reason: "modified" })
  })

  it("kept stdout to JSON-RPC and its diagnostics on stderr", () => {
    expect(protocolErrors).toEqual([])
    expect(stderr).toContain("runledger mcp: serving the Landscape")
  })

  it("a Landscape that does not exist: exit 2 naming the path", async () => {
    const r = await runCliIn(ws.dir, ["mcp", "--db", "nope.db"])
    expect(r.status).toBe(2)
    expect(r.stdout).toBe("")
    expect(r.stderr).toContain(join(ws.dir, "nope.db"))
  })
})
