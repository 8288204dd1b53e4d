/**
 * Export and verify of a loop run through the built CLI: a real loop of two issues in
 * a real git repository, exported signed and unsigned, as JSON, JSON Lines and CSV,
 * verified, tampered with.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as YAML from "yaml"
import { runCliIn } from "../support/cli.js"
import { fixture, makeRepo, tempDir } from "../loop/helpers.js"

const KEY = "loop-export-key"
const dir = tempDir("runledger-loop-export-")
const db = NodePath.join(dir, "audit.db")
const withKey = { RUNLEDGER_SIGNING_KEY: KEY, ELSPETH_SIGNING_KEY: "" }

/** Runs the built CLI in `dir` with `env` added (runCliIn passes the test's environment on). */
const cli = async (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
  Object.assign(process.env, env)
  try {
    const r = await runCliIn(dir, args)
    return { ...r, out: r.stdout + r.stderr }
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

type Rec = Record<string, unknown>
const readJson = (file: string) => JSON.parse(NodeFs.readFileSync(file, "utf8")) as Array<Rec>

let runId = ""

beforeAll(async () => {
  const repo = makeRepo()
  NodeFs.writeFileSync(NodePath.join(dir, "issues.yaml"), YAML.stringify([{ id: "E-1", title: "one" }, { id: "E-2", title: "two" }]))
  NodeFs.writeFileSync(NodePath.join(dir, "loop.yaml"), YAML.stringify({
    repo,
    issues: "issues.yaml",
    max_agents: 1,
    kill_grace: "300ms",
    implementer: { command: fixture("implementer-commit.sh") },
    commands: { check: "echo checking $ISSUE_ID" },
    gate: { commands: ["check"] },
    validation_triggers: {
      session_end: { failure_mode: "continue", commands: [{ ref: "check" }] },
      run_end: { fire_on: "success", commands: [{ ref: "check" }] }
    }
  }))
  const r = await cli(["loop", "-c", NodePath.join(dir, "loop.yaml"), "--db", db, "--json"])
  expect(r.status, r.stderr).toBe(0)
  runId = (JSON.parse(r.stdout) as { run_id: string }).run_id
}, 60_000)

afterAll(() => NodeFs.rmSync(dir, { recursive: true, force: true }))

describe("export and verify of a loop run (CLI)", () => {
  it("a signed export holds the run, its issues, stages and commands, and verifies", async () => {
    const out = NodePath.join(dir, "signed.json")
    const r = await cli(["export", "--db", db, "--run", runId, "--sign", "--out", out], withKey)
    expect(r.status, r.stderr).toBe(0)
    expect(r.out).toContain(`exported loop run ${runId} (completed)`)
    const records = readJson(out)
    const manifest = records[records.length - 1]!
    expect(manifest).toMatchObject({ record_type: "manifest", run_id: runId, record_count: records.length - 1 })
    const body = records.slice(0, -1)
    expect(body.map((x) => x.seq)).toEqual(body.map((_, i) => i))
    expect(body.every((x) => typeof x.signature === "string")).toBe(true)
    expect(body[0]).toMatchObject({ record_type: "loop_run", run_id: runId, status: "completed", run_end_status: "pass", success_count: 2 })
    expect(body.filter((x) => x.record_type === "loop_issue").map((x) => x.issue_id)).toEqual(["E-1", "E-2"])
    const stages = body.filter((x) => x.record_type === "stage_result")
    expect(stages.filter((s) => s.issue_id === "E-1").map((s) => s.stage)).toEqual(expect.arrayContaining(["implementer", "gate", "session_end"]))
    expect(stages.some((s) => s.issue_id === null && s.stage === "run_end")).toBe(true)
    // Every command follows its stage; each carries its exit code, duration, output tail and log hash.
    const commands = body.filter((x) => x.record_type === "command_result")
    expect(commands.length).toBeGreaterThanOrEqual(7)
    for (const c of commands) {
      const stageAt = body.findIndex((x) => x.record_type === "stage_result" && x.stage_id === c.stage_id)
      expect(stageAt).toBeGreaterThanOrEqual(0)
      expect(stageAt).toBeLessThan(body.indexOf(c))
      expect(c.exit_code).toBe(0)
      expect(typeof c.duration_ms).toBe("number")
      expect(typeof c.output_tail).toBe("string")
      expect(c).not.toHaveProperty("log_file_text")
      const log = c.log_file as string
      expect(c.log_file_sha256).toBe(createHash("sha256").update(NodeFs.readFileSync(log)).digest("hex"))
      expect(c.log_file_bytes).toBe(NodeFs.statSync(log).size)
    }
    const gate = commands.find((c) => c.stage === "gate" && c.issue_id === "E-1")!
    expect(gate.output_tail).toContain("checking E-1")

    const v = await cli(["verify", out], withKey)
    expect(v.status, v.stderr).toBe(0)
    expect(v.out).toContain(`verified ${records.length - 1} records of loop run ${runId}`)
  }, 60_000)

  it("one command's exit code edited in the file: verify exits 1 naming the record", async () => {
    const out = NodePath.join(dir, "tampered.json")
    const r = await cli(["export", "--db", db, "--run", runId, "--sign", "--out", out], withKey)
    expect(r.status, r.stderr).toBe(0)
    const lines = NodeFs.readFileSync(out, "utf8").split("\n")
    const at = lines.findIndex((l) => l.includes(`"record_type":"command_result"`) && l.includes(`"stage":"gate"`))
    expect(at).toBeGreaterThan(0)
    const record = JSON.parse(lines[at]!.replace(/,$/, "")) as Rec
    expect(lines[at]).toContain(`"exit_code":0,`)
    lines[at] = lines[at]!.replace(`"exit_code":0,`, `"exit_code":1,`)
    NodeFs.writeFileSync(out, lines.join("\n"))
    const v = await cli(["verify", out], withKey)
    expect(v.status).toBe(1)
    expect(v.stderr).toContain(`record at position ${at - 1} (seq ${String(record.seq)}, command_result): modified`)
    expect(v.stderr).toContain(`command_id ${String(record.command_id)}`)
  }, 60_000)

  it("an unsigned export has the same records without signatures; verify says it is not signed", async () => {
    const signed = NodePath.join(dir, "for-compare.json")
    const out = NodePath.join(dir, "plain.jsonl")
    expect((await cli(["export", "--db", db, "--run", runId, "--sign", "--out", signed], withKey)).status).toBe(0)
    const r = await cli(["export", "--db", db, "--run", runId, "--out", out])
    expect(r.status, r.stderr).toBe(0)
    const plain = NodeFs.readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Rec)
    const strip = (x: Rec) => {
      const { signature: _s, ...rest } = x
      return rest
    }
    expect(plain).toEqual(readJson(signed).slice(0, -1).map(strip))
    const v = await cli(["verify", out], withKey)
    expect(v.status).toBe(1)
    expect(v.stderr).toContain("(seq 0, loop_run) has no signature: this export is not signed")
  }, 60_000)

  it("CSV: one file per loop record type; --include-logs inlines the logs; a gone log file hashes to null", async () => {
    const csv = NodePath.join(dir, "csv")
    const r = await cli(["export", "--db", db, "--run", runId, "--format", "csv", "--out", csv, "--sign"], withKey)
    expect(r.status, r.stderr).toBe(0)
    const files = NodeFs.readdirSync(csv).sort()
    expect(files).toEqual(expect.arrayContaining(["command_result.csv", "loop_issue.csv", "loop_run.csv", "manifest.csv", "stage_result.csv"]))
    expect(files).not.toContain("row.csv")
    const header = NodeFs.readFileSync(NodePath.join(csv, "command_result.csv"), "utf8").split("\n")[0]!
    expect(header.split(",")).toEqual(expect.arrayContaining(["exit_code", "duration_ms", "output_tail", "log_file", "log_file_sha256", "signature"]))

    const first = readJson(NodePath.join(dir, "signed.json")).find((x) => x.record_type === "command_result")!
    NodeFs.rmSync(first.log_file as string)
    const withLogs = NodePath.join(dir, "logs.json")
    const l = await cli(["export", "--db", db, "--run", runId, "--include-logs", "--sign", "--out", withLogs], withKey)
    expect(l.status, l.stderr).toBe(0)
    const commands = readJson(withLogs).filter((x) => x.record_type === "command_result")
    const gone = commands.find((c) => c.command_id === first.command_id)!
    expect(gone).toMatchObject({ log_file_sha256: null, log_file_bytes: null, log_file_text: null })
    const kept = commands.find((c) => c.command_id !== first.command_id)!
    expect(kept.log_file_text).toBe(NodeFs.readFileSync(kept.log_file as string, "utf8"))
    expect((await cli(["verify", withLogs], withKey)).status).toBe(0)
  }, 60_000)

  it("an id that is neither a pipeline run nor a loop run: exit 2 naming it", async () => {
    const r = await cli(["export", "--db", db, "--run", "loop-nope-123", "--out", NodePath.join(dir, "nope.json")])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("loop-nope-123")
    expect(NodeFs.existsSync(NodePath.join(dir, "nope.json"))).toBe(false)
  }, 60_000)
})
