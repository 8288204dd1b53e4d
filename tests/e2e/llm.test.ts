/**
 * The `llm` transform end to end: the built CLI against the bundled fake
 * OpenAI-compatible server on a loopback port — outputs, every call recorded with its
 * bodies in the payload store, explain, secrets kept out of the trail, faults and
 * retries, replay without the network, verify, purge, and kill -9 with resume.
 */
import Database from "better-sqlite3"
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type FakeFault, type FakeLlmServer, sentimentOf, startFakeLlm } from "../../src/dev/fake-llm.js"
import { BIN, REPO, runCliIn } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { tempDir } from "../support/pipeline.js"

const SECRET = "sk-test-4f1b0c9e7d2a-never-recorded"

const TEXTS = [
  "I love this product and the support was excellent",
  "The parcel arrived broken and I want a refund",
  "It is a chair",
  "Great value and fantastic quality",
  "Terrible experience and the worst service",
  "The meeting is on Tuesday",
  "Happy with the nice packaging",
  "Awful, the screen was broken",
  "Delivered on a Monday",
  "Best purchase this year, wonderful",
  "Sad that it stopped working, poor battery",
  "A blue box"
]

const csvOf = (texts: ReadonlyArray<string>) => `id,text\n${texts.map((t, i) => `${i + 1},"${t}"`).join("\n")}\n`

interface SettingsOptions {
  readonly baseUrl: string
  readonly extra?: string
  readonly llmExtra?: string
  readonly input?: string
  readonly maxAttempts?: number
  readonly checkpoint?: string
}

const settingsYaml = (o: SettingsOptions) => `
source:
  plugin: csv
  on_success: comments
  options:
    path: ${o.input ?? "input.csv"}
    schema: { mode: fixed, fields: ["id: int", "text: str"] }
    on_validation_failure: discard
transforms:
  - name: sentiment
    plugin: llm
    input: comments
    on_success: classified
    on_error: review
    options:
      provider: openai_compatible
      base_url: ${o.baseUrl}
      api_key: \${LLM_TEST_KEY}
      model: fake-gpt
      system_prompt: You classify comments.
      template: "Classify the sentiment of: {{ row.text }}"
      response_field: analysis
      response_format: json
      response_schema:
        type: object
        required: [sentiment, confidence]
        properties:
          sentiment: { enum: [positive, negative, neutral] }
          confidence: { type: number }
      required_input_fields: [text]
      timeout_seconds: 0.5
      pool_size: 4
      schema: { mode: observed }
${o.llmExtra ?? ""}
gates:
  - name: by_sentiment
    input: classified
    condition: "row['analysis']['sentiment'] == 'negative'"
    routes: { "true": complaints, "false": output }
sinks:
  output: { plugin: json, options: { path: out/results.jsonl, format: jsonl, schema: { mode: observed } } }
  complaints: { plugin: json, options: { path: out/complaints.jsonl, format: jsonl, schema: { mode: observed } } }
  review: { plugin: json, options: { path: out/review.jsonl, format: jsonl, schema: { mode: observed } } }
payload_store: { backend: filesystem, base_path: payloads }
retry: { max_attempts: ${o.maxAttempts ?? 5}, initial_delay_seconds: 0.01, max_delay_seconds: 0.05 }
${o.checkpoint ?? ""}
landscape: { url: "sqlite:///runs/audit.db" }
${o.extra ?? ""}
`

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex")

const jsonl = (path: string): Array<Record<string, unknown>> =>
  existsSync(path) ? readFileSync(path, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l)) : []

const run = async (dir: string, settings: string, args: ReadonlyArray<string> = []) => {
  writeFileSync(join(dir, "settings.yaml"), settings)
  const r = await runCliIn(dir, ["run", "-s", "settings.yaml", "--json", ...args])
  return { ...r, result: r.status === 0 || r.status === 1 ? (JSON.parse(r.stdout || "null") as Record<string, unknown> | null) : null }
}

const db = (dir: string) => new Database(join(dir, "runs/audit.db"), { readonly: true })

let server: FakeLlmServer
const previousKey = process.env.LLM_TEST_KEY

beforeAll(async () => {
  process.env.LLM_TEST_KEY = SECRET
  server = await startFakeLlm({ retryAfterSeconds: 0 })
})
afterAll(async () => {
  await server.close()
  if (previousKey === undefined) delete process.env.LLM_TEST_KEY
  else process.env.LLM_TEST_KEY = previousKey
})

describe("a sentiment pipeline against the fake server", () => {
  let dir = ""
  let runId = ""
  beforeAll(async () => {
    dir = tempDir("rl-llm-")
    writeFileSync(join(dir, "input.csv"), csvOf(TEXTS))
    server.configure({ faults: {}, latencyMs: 5, flipSentiment: false })
    server.resetStats()
    const r = await run(dir, settingsYaml({ baseUrl: server.baseUrl }))
    expect(r.status, r.stderr).toBe(0)
    runId = String(r.result!.run_id)
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("classifies every row, routes by the reply, in source order", async () => {
    const output = jsonl(join(dir, "out/results.jsonl"))
    const complaints = jsonl(join(dir, "out/complaints.jsonl"))
    expect(output.length + complaints.length).toBe(TEXTS.length)
    for (const row of [...output, ...complaints]) {
      const analysis = row.analysis as { sentiment: string }
      expect(analysis.sentiment).toBe(sentimentOf(row.text as string))
      expect(row.analysis_model).toBe("fake-gpt")
      expect((row.analysis_usage as { prompt_tokens: number }).prompt_tokens).toBeGreaterThan(0)
    }
    expect(complaints.every((r) => (r.analysis as { sentiment: string }).sentiment === "negative")).toBe(true)
    // A sink receives its rows in source order even though the calls ran concurrently.
    for (const rows of [output, complaints]) {
      const ids = rows.map((r) => r.id as number)
      expect(ids).toEqual([...ids].sort((a, b) => a - b))
    }
    await checkInvariantsIn(join(dir, "runs/audit.db"), runId)
  })

  it("records one call per row and attempt, with both bodies stored under their hashes", () => {
    const d = db(dir)
    try {
      const calls = d.prepare(`SELECT * FROM calls WHERE run_id = ?`).all(runId) as Array<Record<string, unknown>>
      expect(calls).toHaveLength(TEXTS.length)
      expect(server.stats().requests).toBe(TEXTS.length)
      const states = d.prepare(`SELECT COUNT(*) AS n FROM node_states s JOIN nodes n ON n.run_id = s.run_id AND n.node_id = s.node_id
                                WHERE s.run_id = ? AND n.plugin_name = 'llm'`).get(runId) as { n: number }
      expect(states.n).toBe(TEXTS.length)
      for (const c of calls) {
        expect(c).toMatchObject({ provider: "openai_compatible", model: "fake-gpt", response_model: "fake-gpt", http_status: 200, attempt: 1, error_class: null, call_type: "llm" })
        expect(JSON.parse(c.usage_json as string).total_tokens).toBeGreaterThan(0)
        for (const hash of [c.request_hash as string, c.response_hash as string]) {
          const blob = readFileSync(join(dir, "payloads", hash.slice(0, 2), hash), "utf8")
          expect(sha256(blob)).toBe(hash)
        }
        const request = JSON.parse(readFileSync(join(dir, "payloads", (c.request_hash as string).slice(0, 2), c.request_hash as string), "utf8"))
        expect(request.method).toBe("POST")
        expect(request.body.messages[1].content).toMatch(/^Classify the sentiment of: /)
      }
    } finally {
      d.close()
    }
  })

  it("never records the API key: not in the settings snapshot, the nodes, the calls, the payloads or the output", async () => {
    const d = db(dir)
    try {
      for (const table of ["runs", "nodes", "calls", "node_states", "transform_errors"]) {
        const rows = d.prepare(`SELECT * FROM ${table}`).all()
        expect(JSON.stringify(rows)).not.toContain(SECRET)
      }
      const settings = JSON.parse((d.prepare(`SELECT settings_json FROM runs WHERE run_id = ?`).get(runId) as { settings_json: string }).settings_json)
      expect(settings.transforms[0].options.api_key).toBe("[redacted]")
    } finally {
      d.close()
    }
    const { readdirSync } = await import("node:fs")
    for (const sub of readdirSync(join(dir, "payloads"))) {
      for (const f of readdirSync(join(dir, "payloads", sub))) expect(readFileSync(join(dir, "payloads", sub, f), "utf8")).not.toContain(SECRET)
    }
    const ex = await runCliIn(dir, ["export", "--db", "runs/audit.db", "--run", runId, "--out", "trail.jsonl", "--include-payloads"])
    expect(ex.status, ex.stderr).toBe(0)
    expect(readFileSync(join(dir, "trail.jsonl"), "utf8")).not.toContain(SECRET)
  })

  it("explain of a row shows the prompt, the reply and the decision", async () => {
    const r = await runCliIn(dir, ["explain", "--db", "runs/audit.db", "--run", runId, "--row", "1"])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain("call llm attempt 1  openai_compatible fake-gpt → 200")
    expect(r.stdout).toContain("prompt: Classify the sentiment of: The parcel arrived broken and I want a refund")
    expect(r.stdout).toMatch(/reply: \{"sentiment":"negative","confidence":[0-9.]+\}/)
    expect(r.stdout).toContain("row['analysis']['sentiment'] == 'negative' → 'true' → sink complaints")
    expect(r.stdout).toContain("outcome ROUTED → sink complaints")
    const j = await runCliIn(dir, ["explain", "--db", "runs/audit.db", "--run", runId, "--row", "1", "--json"])
    const lineage = JSON.parse(j.stdout) as { calls: Array<{ request: { status: string }; response: { status: string; value: unknown } }> }
    expect(lineage.calls).toHaveLength(1)
    expect(lineage.calls[0]!.request.status).toBe("stored")
    expect(lineage.calls[0]!.response.status).toBe("stored")
  })

  it("exports the calls with their bodies inline; verify checks the bodies against the hashes", async () => {
    const env = { RUNLEDGER_SIGNING_KEY: "k" }
    Object.assign(process.env, env)
    try {
      const ex = await runCliIn(dir, ["export", "--db", "runs/audit.db", "--run", runId, "--out", "signed.jsonl", "--sign", "--include-payloads"])
      expect(ex.status, ex.stderr).toBe(0)
      const records = jsonl(join(dir, "signed.jsonl"))
      const calls = records.filter((r) => r.record_type === "call")
      expect(calls).toHaveLength(TEXTS.length)
      for (const c of calls) expect(sha256(c.response_payload as string)).toBe(c.response_hash)
      const ok = await runCliIn(dir, ["verify", "signed.jsonl"])
      expect(ok.status, ok.stderr).toBe(0)
      expect(ok.stdout).toContain(`${2 * TEXTS.length} inline payloads checked against their hashes`)
      // A body changed after export no longer matches its hash (and the record's signature).
      const tampered = readFileSync(join(dir, "signed.jsonl"), "utf8").replace(/"negative/, "\"positive")
      writeFileSync(join(dir, "tampered.jsonl"), tampered)
      const bad = await runCliIn(dir, ["verify", "tampered.jsonl"])
      expect(bad.status).toBe(1)
      expect(bad.stderr).toMatch(/modified/)
    } finally {
      delete process.env.RUNLEDGER_SIGNING_KEY
    }
  })
})

describe("faults at 20% of calls", () => {
  const FAULT_CLASS: Record<FakeFault, string> = {
    rate_limit: "rate_limited",
    server_error: "server_error",
    timeout: "timeout",
    malformed_json: "malformed_response",
    connection_reset: "connection_reset",
    truncated_body: "truncated_body"
  }
  it.each(Object.keys(FAULT_CLASS) as Array<FakeFault>)("%s: every row has one terminal outcome, retries are attempts, nothing lost", async (fault) => {
    const dir = tempDir("rl-llm-fault-")
    try {
      writeFileSync(join(dir, "input.csv"), csvOf(TEXTS))
      server.configure({ faults: { [fault]: 0.2 }, latencyMs: 0, seed: 7 })
      server.resetStats()
      const r = await run(dir, settingsYaml({ baseUrl: server.baseUrl, maxAttempts: 6 }))
      expect(r.status, r.stderr).toBe(0)
      const result = r.result!
      const runId = String(result.run_id)
      await checkInvariantsIn(join(dir, "runs/audit.db"), runId)
      expect(result.rows_processed).toBe(TEXTS.length)
      const delivered = jsonl(join(dir, "out/results.jsonl")).length + jsonl(join(dir, "out/complaints.jsonl")).length +
        jsonl(join(dir, "out/review.jsonl")).length
      expect(delivered).toBe(TEXTS.length)
      const d = db(dir)
      try {
        const calls = d.prepare(`SELECT state_id, attempt, error_class FROM calls WHERE run_id = ? ORDER BY state_id, attempt`).all(runId) as Array<
          { state_id: string; attempt: number; error_class: string | null }
        >
        // Every attempt the server saw is a call record, and the attempts of a call are 1..n.
        expect(calls.length).toBe(server.stats().requests)
        const byState = new Map<string, Array<{ attempt: number; error_class: string | null }>>()
        for (const c of calls) byState.set(c.state_id, [...(byState.get(c.state_id) ?? []), c])
        expect(byState.size).toBe(TEXTS.length)
        let retried = 0
        for (const attempts of byState.values()) {
          expect(attempts.map((a) => a.attempt)).toEqual(attempts.map((_, i) => i + 1))
          for (const a of attempts.slice(0, -1)) expect(a.error_class).toBe(FAULT_CLASS[fault])
          if (attempts.length > 1) retried++
        }
        expect(retried, "with 20% faults over 12 rows some call needs a retry").toBeGreaterThan(0)
        expect(server.stats().byOutcome[fault] ?? 0).toBe(calls.filter((c) => c.error_class !== null).length)
      } finally {
        d.close()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("rate_limit", () => {
  it("holds the service's limit as the server sees it, across the pool", async () => {
    const dir = tempDir("rl-llm-rate-")
    try {
      writeFileSync(join(dir, "input.csv"), csvOf(TEXTS))
      server.configure({ faults: {}, latencyMs: 0 })
      server.resetStats()
      const r = await run(dir, settingsYaml({ baseUrl: server.baseUrl, extra: "rate_limit:\n  services:\n    openai: { requests_per_second: 20 }" }))
      expect(r.status, r.stderr).toBe(0)
      const arrivals = server.stats().log.map((x) => x.arrivedAt).sort((a, b) => a - b)
      expect(arrivals).toHaveLength(TEXTS.length)
      // Evenly spaced at 20/s: in any 250 ms at most ⌈0.25 × 20⌉ + 1 = 6 requests start
      // (unlimited, a pool of 4 against a server without latency sends them all at once).
      for (let i = 0; i < arrivals.length; i++) {
        const inWindow = arrivals.filter((t) => t >= arrivals[i]! && t < arrivals[i]! + 250).length
        expect(inWindow).toBeLessThanOrEqual(6)
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

/** A TCP server that counts the connections made to it (and answers none). */
const connectionCounter = async () => {
  let connections = 0
  const s = net.createServer((socket) => {
    connections++
    socket.destroy()
  })
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve))
  const port = (s.address() as net.AddressInfo).port
  return { port, connections: () => connections, close: () => new Promise<void>((resolve) => s.close(() => resolve())) }
}

describe("replay, verify and purge", () => {
  let dir = ""
  let runId = ""
  beforeAll(async () => {
    dir = tempDir("rl-llm-replay-")
    writeFileSync(join(dir, "input.csv"), csvOf(TEXTS))
    server.configure({ faults: {}, latencyMs: 0, flipSentiment: false })
    const r = await run(dir, settingsYaml({ baseUrl: server.baseUrl }))
    expect(r.status, r.stderr).toBe(0)
    runId = String(r.result!.run_id)
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  const outputs = () => ["results", "complaints", "review"].map((n) => existsSync(join(dir, `out/${n}.jsonl`)) ? readFileSync(join(dir, `out/${n}.jsonl`), "utf8") : "")

  it("replay answers every call from the recorded run: byte-identical outputs, no connection made", async () => {
    const before = outputs()
    const counter = await connectionCounter()
    try {
      const r = await run(dir, settingsYaml({ baseUrl: `http://127.0.0.1:${counter.port}/v1`, extra: `run_mode: replay\nreplay_from: ${runId}` }))
      expect(r.status, r.stderr).toBe(0)
      expect(outputs()).toEqual(before)
      expect(counter.connections()).toBe(0)
      const d = db(dir)
      try {
        const replayed = d.prepare(`SELECT verify_json FROM calls WHERE run_id = ?`).all(String(r.result!.run_id)) as Array<{ verify_json: string }>
        expect(replayed).toHaveLength(TEXTS.length)
        for (const c of replayed) expect(JSON.parse(c.verify_json)).toMatchObject({ mode: "replay", replay_from: runId })
      } finally {
        d.close()
      }
    } finally {
      await counter.close()
    }
  })

  it("a request the recorded run never made stops the replay with an error naming the row", async () => {
    writeFileSync(join(dir, "changed.csv"), csvOf(TEXTS.map((t, i) => (i === 2 ? "A different comment" : t))))
    const r = await run(dir, settingsYaml({ baseUrl: server.baseUrl, input: "changed.csv", extra: `run_mode: replay\nreplay_from: ${runId}` }))
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/row 2 \(node 'sentiment'\) makes a request that run run_\w+ never made/)
  })

  it("verify makes the live calls and flags the rows whose reply and decision changed", async () => {
    server.configure({ flipSentiment: true })
    try {
      const r = await run(dir, settingsYaml({ baseUrl: server.baseUrl, extra: `run_mode: verify\nreplay_from: ${runId}` }))
      expect(r.status, r.stderr).toBe(0)
      const changed = TEXTS.filter((t) => sentimentOf(t) !== "neutral").length
      expect(r.result!.verification).toEqual({
        replay_from: runId,
        calls: TEXTS.length,
        responses_matched: TEXTS.length - changed,
        responses_differed: changed,
        decisions_matched: TEXTS.length - changed,
        decisions_differed: changed,
        unmatched: 0
      })
      const d = db(dir)
      try {
        const rows = d.prepare(
          `SELECT r.row_index, c.verify_json FROM calls c JOIN node_states s ON s.state_id = c.state_id
           JOIN tokens t ON t.token_id = s.token_id JOIN rows r ON r.row_id = t.row_id WHERE c.run_id = ? ORDER BY r.row_index`
        ).all(String(r.result!.run_id)) as Array<{ row_index: number; verify_json: string }>
        for (const row of rows) {
          const v = JSON.parse(row.verify_json) as { decision_match: boolean }
          expect(v.decision_match, TEXTS[row.row_index]).toBe(sentimentOf(TEXTS[row.row_index]!) === "neutral")
        }
      } finally {
        d.close()
      }
    } finally {
      server.configure({ flipSentiment: false })
    }
  })

  it("purge removes expired payloads; the hashes stay and explain says payload purged", async () => {
    const dry = await runCliIn(dir, ["purge", "--db", "runs/audit.db", "--payload-dir", "payloads", "--retention-days", "0", "--dry-run", "--json"])
    expect(dry.status, dry.stderr).toBe(0)
    expect(JSON.parse(dry.stdout).expired).toBeGreaterThan(0)
    const noYes = await runCliIn(dir, ["purge", "--db", "runs/audit.db", "--payload-dir", "payloads", "--retention-days", "0"])
    expect(noYes.status).toBe(2)
    const keep = await runCliIn(dir, ["purge", "--db", "runs/audit.db", "--payload-dir", "payloads", "--retention-days", "30", "--yes", "--json"])
    expect(JSON.parse(keep.stdout).expired).toBe(0)
    const r = await runCliIn(dir, ["purge", "--db", "runs/audit.db", "--payload-dir", "payloads", "--retention-days", "0", "--yes"])
    expect(r.status, r.stderr).toBe(0)
    const d = db(dir)
    try {
      const calls = d.prepare(`SELECT request_hash, response_hash FROM calls WHERE run_id = ?`).all(runId) as Array<{ request_hash: string; response_hash: string }>
      expect(calls).toHaveLength(TEXTS.length)
      for (const c of calls) expect(existsSync(join(dir, "payloads", c.response_hash.slice(0, 2), c.response_hash))).toBe(false)
    } finally {
      d.close()
    }
    const ex = await runCliIn(dir, ["explain", "--db", "runs/audit.db", "--run", runId, "--row", "0"])
    expect(ex.stdout).toMatch(/prompt: payload purged \(hash [0-9a-f]{12}\)/)
    expect(ex.stdout).toMatch(/reply: payload purged/)
    const replay = await run(dir, settingsYaml({ baseUrl: server.baseUrl, extra: `run_mode: replay\nreplay_from: ${runId}` }))
    expect(replay.status).toBe(1)
    expect(replay.stderr).toMatch(/payload purged/)
  })
})

describe("kill -9 during a pooled run, then resume", () => {
  it("makes no call again for a row that was delivered before the kill", async () => {
    const dir = tempDir("rl-llm-kill-")
    try {
      const texts = Array.from({ length: 40 }, (_, i) => `${TEXTS[i % TEXTS.length]} number ${i}`)
      writeFileSync(join(dir, "input.csv"), csvOf(texts))
      server.configure({ faults: {}, latencyMs: 40, flipSentiment: false })
      server.resetStats()
      const settings = settingsYaml({ baseUrl: server.baseUrl, checkpoint: "checkpoint: { checkpoint_interval: 4 }" })
      writeFileSync(join(dir, "settings.yaml"), settings)
      const child = spawn(process.execPath, [BIN, "run", "-s", "settings.yaml"], { cwd: dir, stdio: "ignore", env: process.env })
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("close", (_code, signal) => resolve(signal)))
      while (server.stats().requests < 30) await new Promise((r) => setTimeout(r, 10))
      child.kill("SIGKILL")
      expect(await exited).toBe("SIGKILL")
      const before = server.stats().requests
      const d = db(dir)
      let delivered: number
      let runId: string
      try {
        runId = (d.prepare(`SELECT run_id FROM runs`).get() as { run_id: string }).run_id
        delivered = (d.prepare(`SELECT COUNT(*) AS n FROM token_outcomes WHERE run_id = ? AND is_terminal = 1`).get(runId) as { n: number }).n
      } finally {
        d.close()
      }
      expect(delivered, "the kill came after the first checkpoints").toBeGreaterThan(0)
      expect(delivered).toBeLessThan(texts.length)
      const r = await runCliIn(dir, ["resume", runId, "-s", "settings.yaml", "--json"])
      expect(r.status, r.stderr).toBe(0)
      // The resume asked only about rows that had not been delivered.
      expect(server.stats().requests - before).toBe(texts.length - delivered)
      const all = [...jsonl(join(dir, "out/results.jsonl")), ...jsonl(join(dir, "out/complaints.jsonl"))]
      expect(all.map((x) => x.id as number).sort((a, b) => a - b)).toEqual(texts.map((_, i) => i + 1))
      await checkInvariantsIn(join(dir, "runs/audit.db"), runId)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe("Ctrl-C during a pooled run, then resume", () => {
  it("exits 130 with the run interrupted; resume finishes it with every row once", async () => {
    const dir = tempDir("rl-llm-sigint-")
    try {
      const texts = Array.from({ length: 30 }, (_, i) => `${TEXTS[i % TEXTS.length]} item ${i}`)
      writeFileSync(join(dir, "input.csv"), csvOf(texts))
      server.configure({ faults: {}, latencyMs: 40, flipSentiment: false })
      server.resetStats()
      writeFileSync(join(dir, "settings.yaml"), settingsYaml({ baseUrl: server.baseUrl, checkpoint: "checkpoint: { checkpoint_interval: 4 }" }))
      const child = spawn(process.execPath, [BIN, "run", "-s", "settings.yaml"], { cwd: dir, stdio: "ignore", env: process.env })
      const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)))
      // Ctrl-C while calls are in flight at the server.
      while (server.stats().requests < 12 || server.stats().inFlight === 0) await new Promise((r) => setTimeout(r, 5))
      child.kill("SIGINT")
      expect(await exited).toBe(130)
      const d = db(dir)
      let runId: string
      try {
        const run = d.prepare(`SELECT run_id, status FROM runs`).get() as { run_id: string; status: string }
        expect(run.status).toBe("interrupted")
        runId = run.run_id
        // The aborted calls are in the trail, against an interrupted_calls operation of
        // their node (their rows were after the last checkpoint, so they have no state).
        const aborted = d.prepare(
          `SELECT c.state_id, c.error_class, c.request_hash, o.operation_type, o.status, o.run_id, o.node_id, c.node_id AS call_node
           FROM calls c JOIN operations o ON o.operation_id = c.operation_id WHERE c.run_id = ?`
        ).all(runId) as Array<Record<string, unknown>>
        expect(aborted.length).toBeGreaterThan(0)
        expect(aborted.some((c) => c.error_class === "interrupted")).toBe(true)
        for (const c of aborted) {
          expect(c).toMatchObject({ state_id: null, operation_type: "interrupted_calls", status: "failed", run_id: runId })
          expect(c.node_id).toBe(c.call_node)
          expect(c.request_hash).toMatch(/^[0-9a-f]{64}$/)
        }
      } finally {
        d.close()
      }
      // The interrupted run's signed export carries the operation and its calls, and verifies.
      process.env.RUNLEDGER_SIGNING_KEY = "k"
      try {
        const ex = await runCliIn(dir, ["export", "--db", "runs/audit.db", "--run", runId, "--out", "interrupted.jsonl", "--sign"])
        expect(ex.status, ex.stderr).toBe(0)
        const records = jsonl(join(dir, "interrupted.jsonl"))
        const operations = records.filter((x) => x.record_type === "operation" && x.operation_type === "interrupted_calls")
        expect(operations.length).toBeGreaterThan(0)
        const ids = new Set(operations.map((o) => o.operation_id))
        expect(records.some((x) => x.record_type === "call" && ids.has(x.operation_id) && x.error_class === "interrupted")).toBe(true)
        const ok = await runCliIn(dir, ["verify", "interrupted.jsonl"])
        expect(ok.status, ok.stderr).toBe(0)
      } finally {
        delete process.env.RUNLEDGER_SIGNING_KEY
      }
      const r = await runCliIn(dir, ["resume", runId, "-s", "settings.yaml", "--json"])
      expect(r.status, r.stderr).toBe(0)
      const all = [...jsonl(join(dir, "out/results.jsonl")), ...jsonl(join(dir, "out/complaints.jsonl"))]
      expect(all.map((x) => x.id as number).sort((a, b) => a - b)).toEqual(texts.map((_, i) => i + 1))
      await checkInvariantsIn(join(dir, "runs/audit.db"), runId)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe("examples/llm", () => {
  it("runs against the fake server as docs/llm.md shows", async () => {
    const dir = tempDir("rl-llm-example-")
    const previous = process.env.LLM_BASE_URL
    try {
      mkdirSync(join(dir, "examples/llm"), { recursive: true })
      for (const f of ["settings.yaml", "input.csv"]) cpSync(join(REPO, "examples/llm", f), join(dir, "examples/llm", f))
      server.configure({ faults: {}, latencyMs: 0, flipSentiment: false })
      process.env.LLM_BASE_URL = server.baseUrl
      const r = await runCliIn(dir, ["run", "-s", "examples/llm/settings.yaml", "--json"])
      expect(r.status, r.stderr).toBe(0)
      expect(JSON.parse(r.stdout).routed_destinations).toEqual({ complaints: 2, output: 4 })
      const ex = await runCliIn(dir, ["explain", "--db", "examples/llm/runs/audit.db", "--run", "latest", "--row", "1"])
      expect(ex.stdout).toContain("reply: {\"sentiment\":\"negative\"")
    } finally {
      if (previous === undefined) delete process.env.LLM_BASE_URL
      else process.env.LLM_BASE_URL = previous
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
