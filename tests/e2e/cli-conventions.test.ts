/**
 * The CLI behaves like a Unix tool, through the built CLI: results on stdout and
 * diagnostics on stderr, no escape sequences off a terminal, help that names the
 * program with a description for every option and examples for every command, read
 * commands that refuse a Landscape file that does not exist (never creating it),
 * one-line reasons in `runs`, and shell completions.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import Database from "better-sqlite3"
import { spawnSync } from "node:child_process"
import { BIN, type CliResult, runCli } from "../support/cli.js"

let dir = ""
const cli = (...args: Array<string>): CliResult => runCli(args, { cwd: dir, env: { NO_COLOR: undefined, FORCE_COLOR: undefined } })
const ESC = "\x1b"

beforeAll(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), "rl-conventions-")))
  writeFileSync(join(dir, "in.csv"), "id,name\n1,a\n")
  writeFileSync(
    join(dir, "one.yaml"),
    "source: {plugin: csv, options: {path: in.csv, schema: {mode: observed}, on_validation_failure: discard}}\n" +
      "transforms: [{plugin: passthrough, options: {schema: {mode: observed}}}]\n" +
      "sinks: {out: {plugin: csv, options: {path: out/one.csv, schema: {mode: observed}}}}\n" +
      "default_sink: out\nlandscape: {url: 'sqlite:///audit.db'}\n"
  )
  const r = cli("run", "-s", "one.yaml")
  expect(r.status, r.stderr).toBe(0)
})
afterAll(() => {
  if (dir !== "") rmSync(dir, { recursive: true, force: true })
})

/** Every command path of the CLI, as `--help` reaches it. */
const COMMANDS = [
  "run",
  "resume",
  "validate",
  "runs",
  "explain",
  "export",
  "verify",
  "plugins",
  "plugins list",
  "migrate-settings",
  "loop",
  "loop status",
  "loop logs",
  "serve",
  "mcp",
  "purge",
  "dev",
  "dev fake-llm",
  "completions"
]

describe("results on stdout, diagnostics on stderr", () => {
  it("run, runs, explain, validate, plugins print their result on stdout, nothing on stderr, no escape sequences", () => {
    const outputs = {
      run: cli("run", "-s", "one.yaml"),
      runs: cli("runs", "--db", "audit.db"),
      explain: cli("explain", "--db", "audit.db", "--run", "latest", "--row", "0"),
      validate: cli("validate", "-s", "one.yaml"),
      plugins: cli("plugins")
    }
    for (const [name, r] of Object.entries(outputs)) {
      expect(r.status, `${name}: ${r.stderr}`).toBe(0)
      expect(r.stdout.length, name).toBeGreaterThan(0)
      expect(r.stderr, name).toBe("")
      expect(r.stdout.includes(ESC), name).toBe(false)
    }
    // Counts read as English: one row, one step, one sink.
    expect(outputs.run.stdout).toMatch(/^run run_\w+ completed: 1 row read$/m)
    expect(outputs.validate.stdout).toBe("one.yaml: valid — 1 step, 1 sink, 3 nodes, 2 edges\n")
    expect(outputs.runs.stdout).toMatch(/^RUN +KIND +STATUS/)
    expect(outputs.explain.stdout).toContain("source row 0")
  })
})

describe("--help", () => {
  it("every command: usage names the program, every option has its own description, examples, plain text", () => {
    const root = cli("--help")
    expect(root.status).toBe(0)
    expect(root.stdout).toMatch(/^\$ runledger$/m)
    for (const path of COMMANDS) {
      const r = cli(...path.split(" "), "--help")
      expect(r.status, path).toBe(0)
      const text = r.stdout
      expect(text.includes(ESC), path).toBe(false)
      expect(text, path).toMatch(new RegExp(`^\\$ runledger ${path}( |$)`, "m"))
      expect(text, path).not.toContain("A user-defined piece of text")
      expect(text, path).not.toContain("A true or false value")
      expect(text, path).toMatch(new RegExp(`^EXAMPLES\\n\\n {2}\\$ .*runledger ${path}`, "m"))
      // Each option block holds a description of its own beyond the generic notes.
      const options = text.split(/^OPTIONS$/m)[1]?.split(/^[A-Z]{4,}$/m)[0] ?? ""
      const blocks = options.trim() === "" ? [] : options.trim().split(/\n(?=\S)/)
      for (const block of blocks) {
        const own = block.split("\n").slice(1).map((l) => l.trim()).filter((l) =>
          l !== "" && l !== "This setting is optional." && !l.startsWith("One of the following:") && !/^An? (existing )?(file|directory|integer)/.test(l)
        )
        expect(own.length, `${path}: ${block.split("\n")[0]}`).toBeGreaterThan(0)
      }
    }
  })

  it("on a terminal (a pty from script(1)): bold headings, unless NO_COLOR is set", () => {
    const pty = (env: Record<string, string | undefined>) =>
      spawnSync("script", ["-qec", `"${process.execPath}" "${BIN}" runs --help`, "/dev/null"], {
        cwd: dir,
        env: { ...process.env, TERM: "xterm", NO_COLOR: undefined, ...env },
        encoding: "utf8",
        timeout: 60_000
      })
    const colour = pty({})
    if (colour.error !== undefined || colour.status !== 0) {
      console.warn(`cli-conventions: no pty through script(1) (${colour.error?.message ?? colour.stderr}); terminal case not run`)
      return
    }
    expect(colour.stdout).toContain(`${ESC}[0;1mEXAMPLES${ESC}[0m`)
    expect(colour.stdout).toContain("$ runledger runs")
    const plain = pty({ NO_COLOR: "1" })
    expect(plain.status).toBe(0)
    expect(plain.stdout.includes(ESC)).toBe(false)
    expect(plain.stdout).toContain("EXAMPLES")
  })

  it("a parse error is plain text on stderr, exit 2", () => {
    const r = cli("runs", "--bogus")
    expect(r.status).toBe(2)
    expect(r.stderr.includes(ESC)).toBe(false)
  })
})

describe("read commands on a Landscape that does not exist", () => {
  it("runs, explain, export, loop status, loop logs, resume: exit 2 naming the file, which is not created", () => {
    const missing = join(dir, "missing.db")
    const cases = [
      // The three spellings of --db, each naming the same file.
      ["runs", "--db", missing],
      ["runs", "--db", `sqlite:///${missing}`],
      ["runs", "--db", "sqlite:///missing.db"],
      ["explain", "--db", missing, "--run", "latest", "--row", "0"],
      ["export", "--db", `sqlite:///${missing}`, "--run", "latest", "--out", "x.json"],
      ["loop", "status", "--db", missing],
      ["loop", "logs", "--db", missing, "X-1"],
      ["resume", "latest", "-s", "one.yaml", "--db", missing]
    ]
    for (const args of cases) {
      const r = cli(...args)
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).toBe(2)
      expect(r.stderr, args.join(" ")).toContain(`no Landscape at ${missing}`)
      expect(existsSync(missing), args.join(" ")).toBe(false)
    }
    // Without --db: the default ./runledger.db, named and not created.
    const r = cli("runs")
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(`no Landscape at ${join(dir, "runledger.db")}`)
    expect(existsSync(join(dir, "runledger.db"))).toBe(false)
  })
})

describe("runs: one line per run", () => {
  it("a multi-line reason is cut to its first line; --verbose and --json give it in full", () => {
    const db = join(dir, "reasons.db")
    const r = cli("run", "-s", "one.yaml", "--db", db, "--quiet")
    expect(r.status, r.stderr).toBe(0)
    const trace = "sink 'out' write failed: disk full\n    at write (sinks/csv.ts:10:5)\n    at commit (sink-commit.ts:99:1)"
    const conn = new Database(db)
    conn.prepare("UPDATE runs SET status = 'failed', error_message = ?").run(trace)
    conn.close()
    const table = cli("runs", "--db", db)
    expect(table.status, table.stderr).toBe(0)
    const lines = table.stdout.trim().split("\n")
    expect(lines.length).toBe(2)
    expect(lines[1]).toMatch(/failed .*sink 'out' write failed: disk full …$/)
    expect(table.stdout).not.toContain("at write")
    const verbose = cli("runs", "--db", db, "--verbose")
    expect(verbose.stdout.trim().split("\n").length).toBe(2)
    expect(verbose.stdout).toContain("at write (sinks/csv.ts:10:5)")
    const json = JSON.parse(cli("runs", "--db", db, "--json").stdout) as Array<{ reason: string }>
    expect(json[0]!.reason).toBe(trace)
  })
})

describe("runledger completions", () => {
  it("bash, zsh and fish: a script naming the subcommands, on stdout", () => {
    const marks = { bash: "complete -F", zsh: "#compdef runledger", fish: "complete -c runledger" }
    for (const [shell, mark] of Object.entries(marks)) {
      const r = cli("completions", shell)
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout, shell).toContain(mark)
      for (const name of ["run", "runs", "explain", "export", "verify", "loop", "completions"]) expect(r.stdout, `${shell}: ${name}`).toContain(name)
    }
    expect(cli("completions", "tcsh").status).toBe(2)
  })
})
