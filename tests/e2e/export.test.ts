/**
 * Export and verify through the built CLI, on the `ledger` pipeline fixture
 * (tests/fixtures/pipelines/ledger), run from a copy of the fixtures folder.
 */
import { afterAll, describe, expect, it } from "vitest"
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { runCli } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { pipelineFixtures } from "../support/fixtures.js"

const work = pipelineFixtures()
afterAll(() => rmSync(work, { recursive: true, force: true }))

const KEY = "e2e-signing-key"
const NO_KEY = { RUNLEDGER_SIGNING_KEY: "", ELSPETH_SIGNING_KEY: "" }
const WITH_KEY = { RUNLEDGER_SIGNING_KEY: KEY, ELSPETH_SIGNING_KEY: "" }
const FIXTURE = "ledger"
const settingsText = readFileSync(join(work, FIXTURE, "settings.yaml"), "utf8")

/** A variant of the ledger settings under a new name, writing to its own folder. */
const variant = (name: string, edit: (text: string) => string): string => {
  const text = edit(settingsText).replaceAll("ledger/output/", `ledger/output/${name}/`)
    .replace("ledger/runs/audit.db", `ledger/runs/${name}.db`)
  const file = join(FIXTURE, `${name}.yaml`)
  writeFileSync(join(work, file), text)
  return file
}

describe("export and verify from the CLI", () => {
  it("the ledger fixture runs and exports its trail through a fresh sink", async () => {
    const r = runCli(["run", "-s", `${FIXTURE}/settings.yaml`, "--json"], { cwd: work, env: NO_KEY })
    expect(r.status, r.stderr).toBe(0)
    const result = JSON.parse(r.stdout) as Record<string, unknown>
    expect(result.status).toBe("completed")
    expect(result.export_status).toBe("completed")
    const trail = JSON.parse(readFileSync(join(work, FIXTURE, "output/trail.json"), "utf8")) as Array<Record<string, unknown>>
    expect(trail[0]).toMatchObject({ record_type: "run", run_id: result.run_id, export_status: "pending" })
    expect(trail.filter((x) => x.record_type === "row")).toHaveLength(8)
    await checkInvariantsIn(join(work, FIXTURE, "runs/audit.db"), result.run_id as string)
  })

  it("signing without a key fails fast: exit 2 before any row is read or sink opened", () => {
    const file = variant("nokey", (t) => t.replace("sign: false", "sign: true"))
    const r = runCli(["run", "-s", file], { cwd: work, env: NO_KEY })
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("landscape.export.sign")
    expect(r.stderr).toContain("RUNLEDGER_SIGNING_KEY")
    expect(r.stderr).toContain("ELSPETH_SIGNING_KEY")
    expect(existsSync(join(work, FIXTURE, "output/nokey"))).toBe(false)
    expect(existsSync(join(work, FIXTURE, "runs/nokey.db"))).toBe(false)
  })

  it("a signed in-run export verifies; a tampered copy does not", () => {
    const file = variant("signed", (t) => t.replace("sign: false", "sign: true"))
    const r = runCli(["run", "-s", file, "--json"], { cwd: work, env: { ELSPETH_SIGNING_KEY: KEY, RUNLEDGER_SIGNING_KEY: "" } })
    expect(r.status, r.stderr).toBe(0)
    const trail = join(work, FIXTURE, "output/signed/trail.json")
    const ok = runCli(["verify", trail], { cwd: work, env: WITH_KEY })
    expect(ok.status, ok.stderr).toBe(0)
    expect(ok.stdout).toMatch(/verified \d+ records of run run_/)
    expect(ok.stdout.trim().split("\n")).toHaveLength(1)
    expect(ok.stderr).toBe("")

    const tampered = join(work, "tampered.json")
    writeFileSync(tampered, readFileSync(trail, "utf8").replace("\"Lindqvist\"", "\"Lindqvisk\""))
    const bad = runCli(["verify", tampered], { cwd: work, env: WITH_KEY })
    expect(bad.status).toBe(1)
    expect(bad.stderr).toMatch(/record at position \d+ \(seq \d+, row\): modified/)

    const noKey = runCli(["verify", trail], { cwd: work, env: NO_KEY })
    expect(noKey.status).toBe(2)
  })

  it("a failing export leaves the run completed: exit 0, the error on stderr", () => {
    const file = variant("failing", (t) => t.replace("output/trail.json", "input.csv/trail.json"))
    const r = runCli(["run", "-s", file, "--json"], { cwd: work, env: NO_KEY })
    expect(r.status, r.stderr).toBe(0)
    const result = JSON.parse(r.stdout) as Record<string, unknown>
    expect(result.status).toBe("completed")
    expect(result.export_status).toBe("failed")
    expect(r.stderr).toContain("export failed")
  })

  it("format csv writes one file per record type beside the export sink's path", () => {
    const file = variant("csvfmt", (t) => t.replace("format: json", "format: csv"))
    const r = runCli(["run", "-s", file, "--json"], { cwd: work, env: NO_KEY })
    expect(r.status, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).export_status).toBe("completed")
    const files = readdirSync(join(work, FIXTURE, "output/csvfmt/trail"))
    expect(files).toContain("run.csv")
    expect(files).toContain("token_outcome.csv")
  })

  it("`export` writes JSON, JSON Lines and CSV of any run; `verify` checks them", () => {
    const db = `${FIXTURE}/runs/audit.db`
    const e = runCli(["export", "--db", db, "--run", "latest", "--format", "json", "--out", "out/trail.jsonl", "--sign"], { cwd: work, env: WITH_KEY })
    expect(e.status, e.stderr).toBe(0)
    expect(e.stdout).toMatch(/exported run run_\w+ \(completed\): \d+ records, signed/)
    const v = runCli(["verify", "out/trail.jsonl"], { cwd: work, env: WITH_KEY })
    expect(v.status, v.stderr).toBe(0)
    const lines = readFileSync(join(work, "out/trail.jsonl"), "utf8").trim().split("\n")
    expect(JSON.parse(lines[lines.length - 1]!).record_type).toBe("manifest")

    const csv = runCli(["export", "--db", db, "--run", "latest", "--format", "csv", "--out", "out/csv"], { cwd: work, env: NO_KEY })
    expect(csv.status, csv.stderr).toBe(0)
    expect(readdirSync(join(work, "out/csv"))).toContain("node_state.csv")

    runCli(["export", "--db", db, "--run", "latest", "--out", "out/unsigned.json"], { cwd: work, env: NO_KEY })
    const notSigned = runCli(["verify", "out/unsigned.json"], { cwd: work, env: WITH_KEY })
    expect(notSigned.status).toBe(1)
    expect(notSigned.stderr).toContain("not signed")

    expect(runCli(["export", "--db", db, "--run", "run_nope", "--out", "out/x.json"], { cwd: work }).status).toBe(2)
    expect(runCli(["export", "--db", db, "--run", "latest", "--out", "out/x.json", "--sign"], { cwd: work, env: NO_KEY }).status).toBe(2)
    expect(existsSync(join(work, "out/x.json"))).toBe(false)
  })
})
