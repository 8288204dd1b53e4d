/**
 * Telemetry through the built CLI: every event reaches the JSONL file in order (also
 * for a failed run and after Ctrl-C), and the OTLP exporter sends one trace per run
 * with spans for commits, sink writes, aggregation flushes and exports, and metrics,
 * to an OTLP/HTTP receiver on 127.0.0.1 — flushed before the process exits.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { spawn, spawnSync } from "node:child_process"
import { closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import * as YAML from "yaml"
import { fixture, makeRepo } from "../loop/helpers.js"
import { BIN, runCli } from "../support/cli.js"
import { type Receiver, type ReceivedSpan, startReceiver } from "../support/otlp.js"
import { tempDir } from "../support/pipeline.js"

const dir = tempDir("rl-telemetry-")
let receiver: Receiver
beforeAll(async () => {
  receiver = await startReceiver()
})
afterAll(async () => {
  await receiver.close()
  rmSync(dir, { recursive: true, force: true })
})

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

interface Run {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

/** The CLI as a child process (the receiver lives in this process, so nothing may block it). */
const start = (args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}) => {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: dir,
    env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: undefined, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
  let done = false
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000)
  const exited = new Promise<Run>((resolve) =>
    child.on("close", (status) => {
      done = true
      clearTimeout(killer)
      resolve({ status, stdout, stderr })
    })
  )
  return { child, exited, done: () => done, stderr: () => stderr }
}

const events = (path: string) =>
  readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { _tag: string } & Record<string, unknown>)

const input = (name: string, rows: number) => {
  const path = join(dir, name)
  const lines = ["id,amount"]
  for (let i = 0; i < rows; i++) lines.push(`${i},${(i * 37) % 100}`)
  writeFileSync(path, lines.join("\n") + "\n")
  return path
}

const spansOf = (runId: string): Array<ReceivedSpan> => {
  const root = receiver.spans.find((s) => s.name === "runledger.run" && s.attributes["runledger.run_id"] === runId)
  return root === undefined ? [] : receiver.spans.filter((s) => s.traceId === root.traceId)
}

describe("telemetry: JSONL events and OTLP export", () => {
  it("a completed run: every event in order in the JSONL file; one trace with commit, sink, flush and export spans; metrics", async () => {
    const csv = input("in.csv", 45)
    const jsonl = join(dir, "events.jsonl")
    const settings = join(dir, "ok.yaml")
    writeFileSync(settings, `
source:
  plugin: csv
  options: {path: ${csv}, schema: {mode: fixed, fields: ["id: int", "amount: int"]}, on_validation_failure: discard}
aggregations:
  - name: totals
    plugin: batch_stats
    trigger: {count: 10}
    output_mode: transform
    options: {schema: {mode: observed}, value_field: amount}
gates:
  - name: big
    condition: "row['mean'] >= 50"
    routes: {"true": high, "false": continue}
sinks:
  out: {plugin: json, options: {path: ${join(dir, "ok-out.jsonl")}, format: jsonl, schema: {mode: observed}}}
  high: {plugin: csv, options: {path: ${join(dir, "ok-high.csv")}, schema: {mode: observed}}}
  audit: {plugin: json, options: {path: ${join(dir, "ok-audit.json")}, schema: {mode: observed}}}
default_sink: out
landscape:
  url: sqlite:///${join(dir, "ok.db")}
  export: {enabled: true, sink: audit, format: json}
telemetry:
  enabled: true
  jsonl_path: ${jsonl}
  exporters:
    - name: otlp
      options: {endpoint: "${receiver.endpoint}"}
`)
    const r = await start(["run", "-s", settings, "--json"]).exited
    expect(r.status, r.stderr).toBe(0)
    const result = JSON.parse(r.stdout) as { run_id: string; rows_processed: number; status: string }
    expect(result.rows_processed).toBe(45)

    const all = events(jsonl)
    const tags = all.map((e) => e._tag)
    expect(tags[0]).toBe("RunStarted")
    expect(tags.at(-1)).toBe("PhaseDone")
    const finished = all.find((e) => e._tag === "RunFinished")!
    expect(finished["status"]).toBe("completed")
    expect(finished["result"]).toMatchObject({ run_id: result.run_id, status: "completed", rows_processed: 45 })
    // The summaries come before RunFinished: one per sink, one per node.
    const finishedAt = tags.indexOf("RunFinished")
    const sinks = all.filter((e) => e._tag === "SinkSummary")
    // Every sink of the graph, the export's `audit` (no rows) included.
    expect(sinks.map((s) => s["sink"]).sort()).toEqual(["audit", "high", "out"])
    tags.forEach((t, i) => {
      if (t === "SinkSummary" || t === "NodeSummary") expect(i).toBeLessThan(finishedAt)
    })
    // The aggregation's 5 outputs (4 batches of 10, 1 of 5) are split between the sinks by their mean.
    expect(sinks.reduce((n, s) => n + Number(s["tokens"]), 0)).toBe(5)
    const high = sinks.find((s) => s["sink"] === "high")!
    expect((high["artifacts"] as Array<{ path: string }>)[0]!.path).toContain("ok-high.csv")
    const nodes = all.filter((e) => e._tag === "NodeSummary")
    expect(nodes.map((n) => n["node"])).toEqual(expect.arrayContaining(["big", "totals", "out", "high"]))
    expect(nodes.find((n) => n["node"] === "big")!["states"]).toEqual({ completed: 5 })
    expect(all.find((e) => e._tag === "PhaseDone")!["phase"]).toBe("export")

    // OTLP: sent as JSON, all spans of the run in one trace under runledger.run.
    expect(receiver.requests.some((q) => q.path === "/v1/traces" && q.contentType === "application/json")).toBe(true)
    const spans = spansOf(result.run_id)
    const root = spans.find((s) => s.name === "runledger.run")!
    expect(root.parentSpanId).toBeUndefined()
    expect(root.service).toBe("runledger")
    expect(root.attributes).toMatchObject({ "runledger.kind": "pipeline", "runledger.status": "completed", "runledger.rows": 45 })
    const names = new Set(spans.map((s) => s.name))
    for (const n of ["runledger.commit", "runledger.sink.write", "runledger.aggregation.flush", "runledger.export"]) expect(names).toContain(n)
    // No SQL statement spans below granularity full.
    expect([...names].filter((n) => n.startsWith("sql."))).toEqual([])
    const byId = new Map(spans.map((s) => [s.spanId, s]))
    for (const s of spans.filter((x) => x.name === "runledger.sink.write")) {
      expect(byId.get(s.parentSpanId!)?.name).toBe("runledger.commit")
      expect(["out", "high"]).toContain(s.attributes["runledger.sink"])
    }
    const flushes = spans.filter((s) => s.name === "runledger.aggregation.flush")
    // 45 rows: four count flushes and one at the end of the source.
    expect(flushes.map((f) => f.attributes["runledger.trigger"])).toEqual(["count", "count", "count", "count", "end_of_source"])
    expect(flushes.map((f) => f.attributes["runledger.batch_size"])).toEqual([10, 10, 10, 10, 5])
    for (const f of flushes) {
      expect(f.parentSpanId).toBe(root.spanId)
      expect(f.attributes["runledger.node"]).toBe("totals")
    }
    const exportSpan = spans.find((s) => s.name === "runledger.export")!
    expect(exportSpan.parentSpanId).toBe(root.spanId)
    expect(exportSpan.attributes).toMatchObject({ "runledger.format": "json", "runledger.export_status": "completed" })
    for (const m of ["runledger.runs", "runledger.rows", "runledger.outcomes", "runledger.run.duration_ms", "runledger.node.states"]) {
      expect(receiver.metrics).toContain(m)
    }
  })

  it("a failed run still ends its JSONL file with RunFinished; the endpoint can come from OTEL_EXPORTER_OTLP_ENDPOINT", async () => {
    const jsonl = join(dir, "failed.jsonl")
    const blocker = join(dir, "not-a-dir")
    writeFileSync(blocker, "a file where the sink wants a directory\n")
    const settings = join(dir, "failed.yaml")
    writeFileSync(settings, `
source:
  plugin: csv
  options: {path: ${input("failed.csv", 5)}, schema: {mode: observed}, on_validation_failure: discard}
sinks:
  out: {plugin: csv, options: {path: ${join(blocker, "out.csv")}, schema: {mode: observed}}}
default_sink: out
landscape: {url: "sqlite:///${join(dir, "failed.db")}"}
telemetry:
  jsonl_path: ${jsonl}
  exporters: [{name: otlp}]
`)
    const r = await start(["run", "-s", settings], { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint }).exited
    expect(r.status, r.stderr).toBe(1)
    const all = events(jsonl)
    expect(all[0]!._tag).toBe("RunStarted")
    const last = all.at(-1)!
    expect(last._tag).toBe("RunFinished")
    expect(last["status"]).toBe("failed")
    const runId = String(last["runId"])
    const root = spansOf(runId).find((s) => s.name === "runledger.run")
    expect(root?.attributes["runledger.status"]).toBe("failed")
  })

  it("Ctrl-C (SIGINT) of the CLI: exit 130, the JSONL file has Progress and ends with RunFinished interrupted; the spans were sent", { timeout: 60_000 }, async () => {
    const fifo = join(dir, "slow.fifo")
    const made = spawnSync("mkfifo", [fifo])
    if (made.error !== undefined || made.status !== 0) {
      console.warn(`telemetry SIGINT test: mkfifo unavailable (${made.error?.message ?? made.stderr.toString()}); not run`)
      return
    }
    const jsonl = join(dir, "sigint.jsonl")
    const settings = join(dir, "sigint.yaml")
    mkdirSync(join(dir, "sigint"), { recursive: true })
    writeFileSync(settings, `
source:
  plugin: csv
  options: {path: ${fifo}, schema: {mode: fixed, fields: ["id: int", "amount: int"]}, on_validation_failure: discard}
sinks:
  out: {plugin: csv, options: {path: ${join(dir, "sigint", "out.csv")}, schema: {mode: observed}}}
default_sink: out
landscape: {url: "sqlite:///${join(dir, "sigint.db")}"}
telemetry:
  enabled: true
  jsonl_path: ${jsonl}
  exporters: [{name: otlp, options: {endpoint: "${receiver.endpoint}"}}]
`)
    const run = start(["run", "-s", settings])
    let fd: number | undefined
    try {
      const deadline = Date.now() + 20_000
      for (;;) {
        try {
          fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK)
          break
        } catch (error) {
          if ((error as { code?: string }).code !== "ENXIO") throw error
        }
        if (run.done() || Date.now() > deadline) throw new Error(`the run never opened its source: ${run.stderr()}`)
        await sleep(50)
      }
      writeSync(fd, "id,amount\n")
      // Rows keep coming until a Progress event is in the file (one is due each second).
      let id = 0
      while (!(existsSync(jsonl) && readFileSync(jsonl, "utf8").includes("\"Progress\""))) {
        if (run.done() || Date.now() > deadline) throw new Error(`no Progress event: ${run.stderr()}`)
        writeSync(fd, `${id},${id % 7}\n${id + 1},${id % 5}\n`)
        id += 2
        await sleep(100)
      }
      run.child.kill("SIGINT")
      // The run is finalized at once; a read still pending on the pipe returns when its writer closes.
      while (!readFileSync(jsonl, "utf8").includes("\"RunFinished\"")) {
        if (run.done() || Date.now() > deadline) break
        await sleep(50)
      }
      closeSync(fd)
      fd = undefined
      const r = await run.exited
      expect(r.status, r.stderr).toBe(130)
    } finally {
      if (fd !== undefined) closeSync(fd)
      if (!run.done()) run.child.kill("SIGKILL")
    }
    const all = events(jsonl)
    expect(all[0]!._tag).toBe("RunStarted")
    expect(all.some((e) => e._tag === "Progress")).toBe(true)
    const last = all.at(-1)!
    expect(last._tag).toBe("RunFinished")
    expect(last["status"]).toBe("interrupted")
    const result = last["result"] as { rows_processed: number; status: string }
    expect(result.status).toBe("interrupted")
    const db = new Database(join(dir, "sigint.db"), { readonly: true })
    try {
      const recorded = db.prepare("SELECT status FROM runs WHERE run_id = ?").get(String(last["runId"])) as { status: string }
      expect(recorded.status).toBe("interrupted")
    } finally {
      db.close()
    }
    const root = spansOf(String(last["runId"])).find((s) => s.name === "runledger.run")
    expect(root?.attributes["runledger.status"]).toBe("interrupted")
    expect(root?.events).toContain("runledger.progress")
  })

  it("granularity rows: one RowOutcome event per terminal outcome the Landscape holds", async () => {
    const jsonl = join(dir, "rows.jsonl")
    const settings = join(dir, "rows.yaml")
    writeFileSync(settings, `
source:
  plugin: csv
  options: {path: ${input("rows.csv", 12)}, schema: {mode: observed}, on_validation_failure: discard}
sinks:
  out: {plugin: json, options: {path: ${join(dir, "rows-out.jsonl")}, format: jsonl, schema: {mode: observed}}}
default_sink: out
landscape: {url: "sqlite:///${join(dir, "rows.db")}"}
telemetry:
  enabled: true
  granularity: rows
  exporters: [{name: jsonl, options: {path: ${jsonl}}}, {name: console, options: {format: pretty}}]
`)
    const r = await start(["run", "-s", settings, "--json"]).exited
    expect(r.status, r.stderr).toBe(0)
    const rows = events(jsonl).filter((e) => e._tag === "RowOutcome")
    expect(rows.length).toBe(12)
    expect(new Set(rows.map((e) => e["sink"]))).toEqual(new Set(["out"]))
    // The console exporter: the same events as text lines on stderr; stdout keeps the one JSON document.
    const lines = r.stderr.trim().split("\n")
    expect(lines[0]).toMatch(/^\[telemetry\] RunStarted runId=run_\w+ kind=pipeline at=/)
    expect(lines.filter((l) => l.startsWith("[telemetry] RowOutcome ")).length).toBe(12)
    expect(lines.at(-1)).toMatch(/^\[telemetry\] RunFinished runId=run_\w+ status=completed /)
    expect(JSON.parse(r.stdout)).toMatchObject({ status: "completed", rows_processed: 12 })
  })

  it("an issue loop: one trace with its stages and commands; the loop's events in its JSONL file", { timeout: 60_000 }, async () => {
    const repo = makeRepo()
    const loopDir = join(dir, "loop")
    mkdirSync(loopDir)
    writeFileSync(join(loopDir, "issues.yaml"), YAML.stringify([{ id: "T-1", title: "one" }]))
    writeFileSync(join(loopDir, "loop.yaml"), YAML.stringify({
      repo,
      issues: "issues.yaml",
      workdir: "work",
      implementer: { command: fixture("implementer-commit.sh") },
      commands: { test: "true" },
      gate: { commands: ["test"] },
      telemetry: { enabled: true, jsonl_path: "loop-events.jsonl", exporters: [{ name: "otlp", options: { endpoint: receiver.endpoint } }] }
    }))
    const r = await start(["loop", "-c", join(loopDir, "loop.yaml"), "--db", join(loopDir, "audit.db"), "--json"]).exited
    expect(r.status, r.stderr).toBe(0)
    const runId = (JSON.parse(r.stdout) as { run_id: string }).run_id
    // jsonl_path resolves against the config's directory.
    const all = events(join(loopDir, "loop-events.jsonl"))
    expect(all[0]).toMatchObject({ _tag: "RunStarted", kind: "loop", runId })
    expect(all.at(-1)).toMatchObject({ _tag: "RunFinished", status: "completed", runId })
    const root = receiver.spans.find((s) => s.name === "runledger.loop.run" && s.attributes["runledger.run_id"] === runId)!
    expect(root.parentSpanId).toBeUndefined()
    const trace = receiver.spans.filter((s) => s.traceId === root.traceId)
    const stages = trace.filter((s) => s.name === "runledger.loop.stage")
    expect(stages.map((s) => s.attributes["runledger.stage"])).toEqual(expect.arrayContaining(["implementer", "gate"]))
    for (const s of stages) expect(s.attributes["runledger.issue_id"]).toBe("T-1")
    const byId = new Map(trace.map((s) => [s.spanId, s]))
    const test = trace.find((s) => s.name === "runledger.loop.command" && s.attributes["runledger.ref"] === "test")!
    expect(test.attributes).toMatchObject({ "runledger.passed": true, "runledger.exit_code": 0 })
    expect(byId.get(test.parentSpanId!)?.attributes["runledger.stage"]).toBe("gate")
  })

  it("enabled with nowhere to send: valid, with a warning naming the key", () => {
    const path = join(dir, "nowhere.yaml")
    writeFileSync(path, `
source: {plugin: csv, options: {path: in.csv, schema: {mode: observed}, on_validation_failure: discard}}
sinks: {out: {plugin: csv, options: {path: out.csv, schema: {mode: observed}}}}
default_sink: out
telemetry: {enabled: true}
`)
    const r = runCli(["validate", "-s", path])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toContain("warning: telemetry.enabled is true but no exporter (exporters) and no jsonl_path is given")
  })

  it("invalid telemetry settings exit 2 naming the key", () => {
    const base = `
source: {plugin: csv, options: {path: in.csv, schema: {mode: observed}}}
sinks: {out: {plugin: csv, options: {path: out.csv, schema: {mode: observed}}}}
default_sink: out
`
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["telemetry: {enabled: true, exporters: [{name: datadog}]}", "telemetry.exporters[0].name: 'datadog' is not supported"],
      ["telemetry: {enabled: true, exporters: [{name: otlp}]}", "telemetry.exporters[0].options.endpoint: missing"],
      ["telemetry: {exporters: [{name: otlp, options: {endpoint: 'localhost:4318'}}]}", "telemetry.exporters[0].options.endpoint: expected an http(s) URL"],
      ["telemetry: {exporters: [{name: console, options: {colour: true}}]}", "telemetry.exporters[0].options.colour: unknown option"],
      ["telemetry: {granularity: everything}", "telemetry.granularity"],
      ["telemetry: {backpressure_mode: slow}", "telemetry.backpressure_mode: 'slow' is not implemented"]
    ]
    for (const [section, message] of cases) {
      const path = join(dir, "bad.yaml")
      writeFileSync(path, base + section + "\n")
      const r = runCli(["validate", "-s", path], { env: { OTEL_EXPORTER_OTLP_ENDPOINT: undefined } })
      expect(r.status, section).toBe(2)
      expect(r.stderr).toContain(message)
      expect(r.stderr).toContain("bad.yaml")
    }
  })
})
