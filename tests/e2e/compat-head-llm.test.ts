/**
 * ELSPETH's `chaosllm_sentiment` example, unchanged, against the bundled fake server on
 * the port the example names (127.0.0.1:8199). When that port is taken the test says
 * so and does not run.
 */
import { existsSync, readFileSync, rmSync } from "node:fs"
import * as net from "node:net"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type FakeLlmServer, startFakeLlm } from "../../src/dev/fake-llm.js"
import { runCliIn } from "../support/cli.js"
import { compatHeadCopy, compatHeadSkipNotice, HAS_COMPAT_HEAD } from "../support/compat.js"
import { checkInvariantsIn } from "../support/db.js"

compatHeadSkipNotice("ELSPETH's chaosllm_sentiment example against the fake server")

const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const probe = net.createServer().once("error", () => resolve(false)).once("listening", () => probe.close(() => resolve(true)))
    probe.listen(port, "127.0.0.1")
  })

describe.skipIf(!HAS_COMPAT_HEAD)("ELSPETH's chaosllm_sentiment example, unchanged", () => {
  let work = ""
  let server: FakeLlmServer | undefined
  beforeAll(async () => {
    work = compatHeadCopy()
    if (await portFree(8199)) server = await startFakeLlm({ port: 8199 })
    else console.warn("skipped: chaosllm_sentiment — 127.0.0.1:8199, the port the example names, is in use")
  })
  afterAll(async () => {
    await server?.close()
    if (work !== "") rmSync(work, { recursive: true, force: true })
  })

  it("runs, classifies every row with the llm transform and records every call", async () => {
    if (server === undefined) return
    const r = await runCliIn(work, ["run", "-s", "examples/chaosllm_sentiment/settings.yaml", "--json"])
    expect(r.status, r.stderr).toBe(0)
    const result = JSON.parse(r.stdout) as { run_id: string; rows_processed: number; rows_succeeded: number }
    const out = join(work, "examples/chaosllm_sentiment/output/results.json")
    expect(existsSync(out)).toBe(true)
    const rows = readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(rows).toHaveLength(result.rows_succeeded)
    expect(result.rows_succeeded).toBe(result.rows_processed)
    for (const row of rows) {
      expect(JSON.parse(row.sentiment_analysis as string)).toHaveProperty("sentiment")
      expect(row.sentiment_analysis_model).toBe("chaosllm/fake-gpt-4")
    }
    expect(server.stats().requests).toBe(result.rows_processed)
    await checkInvariantsIn(join(work, "examples/chaosllm_sentiment/runs/audit.db"), result.run_id)
  })
})
