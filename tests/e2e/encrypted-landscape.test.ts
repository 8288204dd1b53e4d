/**
 * `landscape.backend: sqlcipher` through the built CLI: the run is recorded in an
 * encrypted file (plain SQLite cannot read it), every command that opens it takes the
 * passphrase from the environment, and every wrong way to open it ends with exit 2 and
 * one line naming the file and the variable — never a plaintext Landscape, never a stack
 * trace. A run killed mid-way resumes from the encrypted file.
 */
import Database from "better-sqlite3"
import { afterAll, describe, expect, it } from "vitest"
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { type CliResult, runCli } from "../support/cli.js"
import { tempDir } from "../support/pipeline.js"

const ROWS = 40
const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** A folder with an input, and settings whose `landscape:` block is `landscape`. */
const project = (landscape: string): string => {
  const dir = tempDir("rl-e2e-enc-")
  dirs.push(dir)
  const lines = ["id,name,amount"]
  for (let i = 0; i < ROWS; i++) lines.push(`${i},name ${i},${i * 10}`)
  writeFileSync(join(dir, "in.csv"), lines.join("\n") + "\n")
  writeFileSync(
    join(dir, "s.yaml"),
    `source:
  plugin: csv
  options:
    path: in.csv
    on_validation_failure: discard
    schema: { mode: fixed, fields: ["id: int", "name: str", "amount: int"] }
sinks:
  out:
    plugin: csv
    options: { path: out/out.csv, schema: { mode: observed } }
default_sink: out
checkpoint: { frequency: every_row }
landscape:
${landscape.split("\n").map((l) => `  ${l}`).join("\n")}
`
  )
  return dir
}

/** No key in the environment unless given. */
const NO_KEYS = { RUNLEDGER_AUDIT_KEY: "", ELSPETH_AUDIT_KEY: "", MY_AUDIT_KEY: "", RUNLEDGER_TEST_CRASH: "" }
const cli = (dir: string, args: ReadonlyArray<string>, env: Record<string, string> = {}): CliResult =>
  runCli(args, { cwd: dir, env: { ...NO_KEYS, ...env } })

/** Exit 2 with one `runledger:` line and no trace. */
const expectUsage = (r: CliResult, ...parts: ReadonlyArray<string>) => {
  expect(r.status, r.stderr).toBe(2)
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /)
  for (const p of parts) expect(r.stderr).toContain(p)
}

const isPlainSqlite = (file: string) => readFileSync(file).subarray(0, 16).toString("latin1") === "SQLite format 3\u0000"

describe("encrypted Landscape (backend: sqlcipher)", () => {
  it("records the run encrypted; every command needs the passphrase, and a wrong or missing one is exit 2 naming file and variable", () => {
    const dir = project("url: sqlite:///runs/audit.db\nbackend: sqlcipher")
    const db = join(dir, "runs/audit.db")

    const noKey = cli(dir, ["run", "-s", "s.yaml"])
    expectUsage(noKey, "RUNLEDGER_AUDIT_KEY (or ELSPETH_AUDIT_KEY)", "not set", db)
    expect(existsSync(db), "no Landscape is created without a key").toBe(false)
    expect(existsSync(join(dir, "out/out.csv"))).toBe(false)

    const run = cli(dir, ["run", "-s", "s.yaml", "--json"], { ELSPETH_AUDIT_KEY: "s3cret passphrase" })
    expect(run.status, run.stderr).toBe(0)
    const { run_id } = JSON.parse(run.stdout) as { run_id: string }
    expect(isPlainSqlite(db)).toBe(false)
    const plain = new Database(db, { readonly: true })
    expect(() => plain.prepare("SELECT COUNT(*) FROM runs").get()).toThrow(/file is not a database/)
    plain.close()

    for (const args of [["runs", "--db", db], ["explain", "--db", db, "--run", "latest", "--row", "0"], ["export", "--db", db, "--run", "latest", "--format", "json", "--out", join(dir, "e.json")]]) {
      expectUsage(cli(dir, args), db, "set RUNLEDGER_AUDIT_KEY (or ELSPETH_AUDIT_KEY)")
      expectUsage(cli(dir, args, { ELSPETH_AUDIT_KEY: "wrong" }), db, "RUNLEDGER_AUDIT_KEY (or ELSPETH_AUDIT_KEY)", "passphrase is wrong")
    }
    const runs = cli(dir, ["runs", "--db", db, "--json"], { ELSPETH_AUDIT_KEY: "s3cret passphrase" })
    expect(runs.status, runs.stderr).toBe(0)
    expect((JSON.parse(runs.stdout) as Array<{ run_id: string; status: string }>).map((r) => [r.run_id, r.status])).toEqual([[run_id, "completed"]])
    // RUNLEDGER_AUDIT_KEY comes first.
    const explain = cli(dir, ["explain", "--db", db, "--run", "latest", "--row", "3", "--json"], { RUNLEDGER_AUDIT_KEY: "s3cret passphrase", ELSPETH_AUDIT_KEY: "wrong" })
    expect(explain.status, explain.stderr).toBe(0)
    expect((JSON.parse(explain.stdout) as { row: { data: unknown } }).row.data).toEqual({ id: 3, name: "name 3", amount: 30 })
    const exported = cli(dir, ["export", "--db", db, "--run", run_id, "--format", "json", "--out", join(dir, "e.json")], { ELSPETH_AUDIT_KEY: "s3cret passphrase" })
    expect(exported.status, exported.stderr).toBe(0)
    expect(readFileSync(join(dir, "e.json"), "utf8")).toContain(run_id)

    // Settings that say plaintext (here: none) do not write into the encrypted file.
    writeFileSync(join(dir, "plain.yaml"), readFileSync(join(dir, "s.yaml"), "utf8").replace("  backend: sqlcipher\n", ""))
    const before = statSync(db).size
    expectUsage(cli(dir, ["run", "-s", "plain.yaml"], { ELSPETH_AUDIT_KEY: "s3cret passphrase" }), db, "landscape.backend: sqlcipher")
    expect(statSync(db).size).toBe(before)
  })

  it("encryption_key_env names the variable run and resume read; the reading commands use the default ones", () => {
    const dir = project("url: sqlite:///runs/audit.db\nbackend: sqlcipher\nencryption_key_env: MY_AUDIT_KEY")
    const db = join(dir, "runs/audit.db")
    expectUsage(cli(dir, ["run", "-s", "s.yaml"], { ELSPETH_AUDIT_KEY: "k" }), "MY_AUDIT_KEY (landscape.encryption_key_env)", "not set")
    const run = cli(dir, ["run", "-s", "s.yaml"], { MY_AUDIT_KEY: "k" })
    expect(run.status, run.stderr).toBe(0)
    expectUsage(cli(dir, ["resume", "latest", "-s", "s.yaml"], { MY_AUDIT_KEY: "other" }), db, "MY_AUDIT_KEY", "passphrase is wrong")
    // With the right key, resume opens the file and refuses the completed run (not a key error).
    expectUsage(cli(dir, ["resume", "latest", "-s", "s.yaml"], { MY_AUDIT_KEY: "k" }), "cannot resume")
    expect(cli(dir, ["runs", "--db", db], { ELSPETH_AUDIT_KEY: "k" }).status).toBe(0)
  })

  it("a run killed mid-way is resumed from the encrypted file, with every row written once", () => {
    const dir = project("url: sqlite:///runs/audit.db\nbackend: sqlcipher")
    const key = { ELSPETH_AUDIT_KEY: "k" }
    const killed = cli(dir, ["run", "-s", "s.yaml"], { ...key, RUNLEDGER_TEST_CRASH: "checkpoint:5" })
    expect(killed.status, killed.stderr).toBe(null)
    expectUsage(cli(dir, ["resume", "latest", "-s", "s.yaml"]), "not set")
    const resumed = cli(dir, ["resume", "latest", "-s", "s.yaml", "--json"], key)
    expect(resumed.status, resumed.stderr).toBe(0)
    expect(JSON.parse(resumed.stdout)).toMatchObject({ status: "completed", rows_processed: ROWS })
    const out = readFileSync(join(dir, "out/out.csv"), "utf8").trim().split("\n")
    expect(out.length).toBe(ROWS + 1)
    expect(new Set(out).size).toBe(ROWS + 1)
    expect(isPlainSqlite(join(dir, "runs/audit.db"))).toBe(false)
  })

  it("an encrypted run never goes into a plaintext Landscape", () => {
    const dir = project("url: sqlite:///runs/audit.db")
    const db = join(dir, "runs/audit.db")
    expect(cli(dir, ["run", "-s", "s.yaml"]).status).toBe(0)
    const before = readFileSync(db)
    writeFileSync(join(dir, "enc.yaml"), readFileSync(join(dir, "s.yaml"), "utf8") + "  backend: sqlcipher\n")
    expectUsage(cli(dir, ["run", "-s", "enc.yaml"], { ELSPETH_AUDIT_KEY: "k" }), db, "is a plaintext Landscape")
    expect(readFileSync(db).equals(before)).toBe(true)
    // The plaintext Landscape still reads with a key in the environment: it is only used for encrypted files.
    expect(cli(dir, ["runs", "--db", db], { ELSPETH_AUDIT_KEY: "k" }).status).toBe(0)
  })

  it.each([
    ["backend: postgresql\nurl: postgresql://user@host/db", "landscape.backend: 'postgresql' is not supported"],
    ["enabled: false", "landscape.enabled: runledger always records"],
    ["encryption_key_env: MY_AUDIT_KEY", "landscape.encryption_key_env"],
    ["backend: sqlcipher\nurl: ':memory:'", "landscape.url"]
  ])("settings %j are refused before anything runs (run and validate)", (landscape, message) => {
    const dir = project(landscape)
    for (const command of ["run", "validate"]) {
      expectUsage(cli(dir, [command, "-s", "s.yaml"], { ELSPETH_AUDIT_KEY: "k" }), "s.yaml", message)
    }
    expect(existsSync(join(dir, "out/out.csv"))).toBe(false)
  })
})
