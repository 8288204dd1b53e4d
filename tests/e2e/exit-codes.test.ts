/**
 * The exit codes of the CLI contract (0 success, 1 the work ran and failed, 2 bad usage
 * or invalid configuration) and the one `runledger: …` line on stderr, command by
 * command, through the built CLI.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type CliResult, runCli } from "../support/cli.js"
import { pipelineFixtures } from "../support/fixtures.js"

const NO_KEY = { RUNLEDGER_SIGNING_KEY: "", ELSPETH_SIGNING_KEY: "" }

let dir = ""
let fixtures = ""
let ordersDb = ""
const cli = (...args: Array<string>): CliResult => runCli(args, { cwd: dir, env: NO_KEY })
/** The stderr lines the CLI wrote with its `runledger:` prefix. */
const errorLines = (r: CliResult) => r.stderr.split("\n").filter((l) => l.startsWith("runledger: "))

beforeAll(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), "rl-exit-")))
  writeFileSync(join(dir, "in.csv"), "id,name\n1,a\n2,b\n")
  const sinkUnder = (path: string) =>
    "source: {plugin: csv, options: {path: in.csv, schema: {mode: observed}, on_validation_failure: discard}}\n" +
    `sinks: {out: {plugin: csv, options: {path: ${path}, schema: {mode: observed}}}}\n` +
    "default_sink: out\nlandscape: {url: 'sqlite:///runs/audit.db'}\n"
  writeFileSync(join(dir, "ok.yaml"), sinkUnder("out/ok.csv"))
  // The sink's folder would be a file: the run starts, then fails opening the sink.
  writeFileSync(join(dir, "fails.yaml"), sinkUnder("in.csv/out.csv"))
  writeFileSync(join(dir, "unknown-key.yaml"), sinkUnder("out/x.csv") + "gatez: []\n")
  writeFileSync(join(dir, "not-a-db.txt"), "hello\n")
  writeFileSync(join(dir, "loop.yaml"), "implementer: {command: 'true'}\nissues: issues.yaml\n")
  writeFileSync(join(dir, "bad-loop.yaml"), "implementer: {command: 'true', timeout: forever}\nissues: issues.yaml\n")
  writeFileSync(join(dir, "issues.yaml"), "- {id: X-1, title: one}\n")
  fixtures = pipelineFixtures()
  const r = runCli(["run", "-s", "orders/settings.yaml", "--quiet"], { cwd: fixtures })
  expect(r.status, r.stderr).toBe(0)
  ordersDb = join(fixtures, "orders/runs/audit.db")
})
afterAll(() => {
  for (const d of [dir, fixtures]) if (d !== "") rmSync(d, { recursive: true, force: true })
})

describe("exit codes and error lines", () => {
  it("0: a completed run (its summary read from the Landscape on stdout), validate, plugins", () => {
    const run = cli("run", "-s", "ok.yaml")
    expect(run.status, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/run run_\w+ completed: 2 rows read\n\nOUTCOME +SINK +TOKENS\nCOMPLETED +out +2\n/)
    const v = cli("validate", "-s", "ok.yaml")
    expect(v.status, v.stderr).toBe(0)
    expect(v.stdout).toContain("ok.yaml: valid")
    expect(cli("plugins").status).toBe(0)
  })

  it("1: a run that failed names the run and the cause; --json still prints its RunResult", () => {
    const r = cli("run", "-s", "fails.yaml", "--json")
    expect(r.status).toBe(1)
    const result = JSON.parse(r.stdout) as { run_id: string; status: string }
    expect(result.status).toBe("failed")
    const lines = errorLines(r)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(new RegExp(`^runledger: run ${result.run_id} failed: sink 'out' \\(csv, in\\.csv/out\\.csv\\): `))
  })

  it("2: invalid settings name the file and the key, for run and validate alike", () => {
    for (const command of ["run", "validate"]) {
      const r = cli(command, "-s", "unknown-key.yaml")
      expect(r.status, command).toBe(2)
      expect(errorLines(r), command).toEqual([
        "runledger: unknown-key.yaml: gatez: unknown setting; did you mean 'gates'? (known: source, transforms, gates, aggregations, coalesce, sinks, default_sink, landscape, payload_store, checkpoint, retry, concurrency, rate_limit, run_mode, replay_from, telemetry)"
      ])
    }
  })

  it("2: a --db that is no Landscape, or no sqlite URL", () => {
    const notDb = cli("runs", "--db", "not-a-db.txt")
    expect(notDb.status).toBe(2)
    expect(errorLines(notDb)).toEqual([`runledger: ${join(dir, "not-a-db.txt")} is not a runledger Landscape: it is not a SQLite database`])
    const badUrl = cli("runs", "--db", "sqlite://x")
    expect(badUrl.status).toBe(2)
    expect(errorLines(badUrl)).toEqual(["runledger: a sqlite URL needs a path: sqlite:///relative.db or sqlite:////absolute.db"])
  })

  it("2: export of a missing Landscape, of an unknown run, and --sign without a key", () => {
    const missing = cli("export", "--db", "nope.db", "--run", "latest", "--out", "x.json")
    expect(missing.status).toBe(2)
    expect(errorLines(missing)).toEqual([`runledger: no Landscape at ${join(dir, "nope.db")} (--db nope.db)`])
    const unknownRun = cli("export", "--db", ordersDb, "--run", "run_nope", "--out", "x.json")
    expect(unknownRun.status).toBe(2)
    expect(errorLines(unknownRun)).toHaveLength(1)
    expect(errorLines(unknownRun)[0]).toContain("run_nope")
    const noKey = cli("export", "--db", ordersDb, "--run", "latest", "--out", "x.json", "--sign")
    expect(noKey.status).toBe(2)
    expect(errorLines(noKey)[0]).toContain("RUNLEDGER_SIGNING_KEY")
  })

  it("2: explain of an unknown run or a missing Landscape", () => {
    const unknownRun = cli("explain", "--db", ordersDb, "--run", "run_nope", "--row", "0")
    expect(unknownRun.status).toBe(2)
    expect(errorLines(unknownRun)).toHaveLength(1)
    expect(errorLines(unknownRun)[0]).toContain("run_nope")
    const missing = cli("explain", "--db", "nope.db", "--run", "latest", "--row", "0")
    expect(missing.status).toBe(2)
    expect(errorLines(missing)).toEqual([`runledger: no Landscape at ${join(dir, "nope.db")}`])
  })

  it("2: verify without a key, or of a file that is not there (the path named)", () => {
    const noKey = cli("verify", "nope.json")
    expect(noKey.status).toBe(2)
    expect(errorLines(noKey)).toEqual(["runledger: verify needs a signing key: set RUNLEDGER_SIGNING_KEY (or ELSPETH_SIGNING_KEY)"])
    const noFile = runCli(["verify", "nope.json"], { cwd: dir, env: { ...NO_KEY, RUNLEDGER_SIGNING_KEY: "k" } })
    expect(noFile.status).toBe(2)
    expect(errorLines(noFile)).toEqual(["runledger: nope.json: no such file"])
  })

  it("2: loop with an invalid config (file, key and value named) or --max-agents 0", () => {
    const bad = cli("loop", "-c", "bad-loop.yaml", "--db", "loop.db")
    expect(bad.status).toBe(2)
    expect(errorLines(bad)).toHaveLength(1)
    expect(errorLines(bad)[0]).toMatch(/^runledger: .*bad-loop\.yaml: implementer\.timeout = forever: /)
    const zero = cli("loop", "-c", "loop.yaml", "--max-agents", "0", "--db", "loop.db")
    expect(zero.status).toBe(2)
    expect(errorLines(zero)).toEqual(["runledger: --max-agents must be at least 1"])
  })

  it("2: an unknown command, without a runledger: line (the parser prints the help)", () => {
    const r = cli("frobnicate")
    expect(r.status).toBe(2)
    expect(errorLines(r)).toEqual([])
  })
})
