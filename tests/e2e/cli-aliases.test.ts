/**
 * The CLI spellings ELSPETH users type, through the built CLI: `run --execute`,
 * `run --dry-run` (which must touch no file), `run --format json`, `plugins list`,
 * `--database`/`-d` for `--db`, explain's `-r`/`-t`/`--no-tui`, and `validate --graph`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { runCliIn } from "../support/cli.js"
import { pipelineFixtures } from "../support/fixtures.js"

const work = pipelineFixtures()
afterAll(() => rmSync(work, { recursive: true, force: true }))

/** Every file and folder under `dir` with its size and modification time. */
const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name)
      const s = statSync(path)
      out[relative(dir, path)] = entry.isDirectory() ? "dir" : `${s.size} ${s.mtimeMs}`
      if (entry.isDirectory()) walk(path)
    }
  }
  walk(dir)
  return out
}

/**
 * A pipeline writing everywhere a run can write: CSV and JSON sinks, a database sink,
 * a CSV audit export, a telemetry file, a Landscape, each under a folder that does
 * not exist yet.
 */
const wideSettings = `
source:
  plugin: csv
  options:
    path: input.csv
    schema: {mode: fixed, fields: ["id: int", "amount: int"]}
    on_validation_failure: quarantine
transforms:
  - name: tidy
    plugin: passthrough
    options: {schema: {mode: observed}}
gates:
  - name: size
    condition: "row['amount'] >= 100"
    routes: {"true": big, "false": continue}
sinks:
  small: {plugin: csv, options: {path: out/small.csv, schema: {mode: observed}}}
  big: {plugin: database, options: {url: "sqlite:///db/big.db", table: big, schema: {mode: observed}}}
  quarantine: {plugin: json, options: {path: out/bad/quarantine.jsonl, schema: {mode: observed}}}
  trail: {plugin: csv, options: {path: audit/trail.csv, schema: {mode: observed}}}
default_sink: small
landscape:
  url: sqlite:///runs/audit.db
  export: {enabled: true, sink: trail, format: csv}
checkpoint: {frequency: every_n, checkpoint_interval: 50}
telemetry: {jsonl_path: logs/events.jsonl}
`

const wideDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "rl-dry-run-"))
  writeFileSync(join(dir, "settings.yaml"), wideSettings)
  writeFileSync(join(dir, "input.csv"), "id,amount\n1,50\n2,150\n3,oops\n")
  return dir
}
const wide: Array<string> = []
afterAll(() => {
  for (const d of wide) rmSync(d, { recursive: true, force: true })
})

const WRITTEN = ["out", "db", "audit", "runs", "logs"]

describe("run --dry-run", () => {
  it("validates, prints the plan on stdout, and creates no file or folder", async () => {
    const dir = wideDir()
    wide.push(dir)
    const before = snapshot(dir)
    const r = await runCliIn(dir, ["run", "-s", "settings.yaml", "--dry-run"])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).not.toContain("dry run:")
    expect(snapshot(dir)).toEqual(before)
    for (const path of WRITTEN) expect(existsSync(join(dir, path)), path).toBe(false)
    expect(r.stdout).toContain("dry run: settings.yaml is valid")
    expect(r.stdout).toMatch(/landscape +sqlite:\/\/\/runs\/audit\.db → .*runs\/audit\.db \(new\)/)
    expect(r.stdout).toContain("checkpoint  every 50 rows")
    expect(r.stdout).toContain("export      the audit trail to sink trail as csv")
    expect(r.stdout).toContain("telemetry   events appended to logs/events.jsonl")
    // The DAG, then every sink with the file it would write.
    expect(r.stdout).toContain("gate size")
    expect(r.stdout).toMatch(/on_validation_failure \[divert\] → sink quarantine \(json\)/)
    expect(r.stdout).toMatch(/small +csv +out\/small\.csv +new +default sink/)
    expect(r.stdout).toMatch(/big +database +db\/big\.db \(table big\) +new/)
    expect(r.stdout).toMatch(/trail +csv +.*audit\/trail \(a folder of CSV files\) +new +audit export/)
  })

  it("-n --json: the plan as one JSON document on stdout", async () => {
    const dir = wideDir()
    wide.push(dir)
    const before = snapshot(dir)
    const r = await runCliIn(dir, ["run", "-s", "settings.yaml", "-n", "--json"])
    expect(r.status, r.stderr).toBe(0)
    expect(snapshot(dir)).toEqual(before)
    const plan = JSON.parse(r.stdout)
    expect(plan).toMatchObject({
      dry_run: true,
      valid: true,
      settings: "settings.yaml",
      source: { plugin: "csv", path: "input.csv" },
      landscape: { url: "sqlite:///runs/audit.db", path: join(dir, "runs/audit.db"), existing_bytes: null },
      checkpoint: { enabled: true, frequency: "every_n", interval: 50, aggregation_boundaries: true },
      export: { sink: "trail", format: "csv", sign: false },
      telemetry_jsonl: "logs/events.jsonl",
      telemetry_otlp: null
    })
    const sinks = Object.fromEntries(
      (plan.sinks as Array<{ name: string }>).map((s) => [s.name, s])
    )
    expect(sinks.small).toMatchObject({ plugin: "csv", path: "out/small.csv", existing_bytes: null, default: true, export: false })
    expect(sinks.big).toMatchObject({ plugin: "database", path: "db/big.db", part: "table big" })
    expect(sinks.trail).toMatchObject({ path: join(dir, "audit/trail"), export: true })
    const types = (plan.graph.nodes as Array<{ node_type: string }>).map((n) => n.node_type).sort()
    expect(types).toEqual(["gate", "sink", "sink", "sink", "sink", "source", "transform"])
    expect(plan.graph.edges.length).toBeGreaterThanOrEqual(4)
  })

  it("leaves existing outputs and the Landscape exactly as they were", async () => {
    const dir = wideDir()
    wide.push(dir)
    const real = await runCliIn(dir, ["run", "-s", "settings.yaml", "--quiet"])
    expect(real.status, real.stderr).toBe(0)
    const small = readFileSync(join(dir, "out/small.csv"))
    const before = snapshot(dir)
    await new Promise((resolve) => setTimeout(resolve, 20))
    const r = await runCliIn(dir, ["run", "-s", "settings.yaml", "--dry-run", "--json"])
    expect(r.status, r.stderr).toBe(0)
    expect(snapshot(dir)).toEqual(before)
    expect(readFileSync(join(dir, "out/small.csv")).equals(small)).toBe(true)
    const plan = JSON.parse(r.stdout)
    expect(plan.landscape.existing_bytes).toBe(statSync(join(dir, "runs/audit.db")).size)
    expect(plan.sinks.find((s: { name: string }) => s.name === "small").existing_bytes).toBe(small.length)
  })

  it("takes --db (and --database) as the Landscape it reports, and does not create it", async () => {
    const dir = wideDir()
    wide.push(dir)
    for (const flag of ["--db", "--database", "-d"]) {
      const r = await runCliIn(dir, ["run", "-s", "settings.yaml", "--dry-run", "--json", flag, "sqlite:///elsewhere/other.db"])
      expect(r.status, r.stderr).toBe(0)
      expect(JSON.parse(r.stdout).landscape).toMatchObject({ url: "sqlite:///elsewhere/other.db", path: join(dir, "elsewhere/other.db") })
    }
    expect(existsSync(join(dir, "elsewhere"))).toBe(false)
  })

  it("invalid settings: exit 2 with the usual message, and still nothing created", async () => {
    const dir = wideDir()
    wide.push(dir)
    writeFileSync(join(dir, "settings.yaml"), wideSettings.replace("default_sink: small", "default_sink: smal"))
    const before = snapshot(dir)
    for (const args of [["--dry-run"], ["--dry-run", "--json"]]) {
      const r = await runCliIn(dir, ["run", "-s", "settings.yaml", ...args])
      expect(r.status).toBe(2)
      expect(r.stdout).toBe("")
      expect(r.stderr).toContain("runledger: settings.yaml: default_sink: no sink named 'smal' (did you mean 'small'?)")
    }
    expect(snapshot(dir)).toEqual(before)
  })

  it("a Landscape URL the run could not open is refused the same way (exit 2)", async () => {
    const r = await runCliIn(work, ["run", "-s", "orders/settings.yaml", "--dry-run", "--db", "postgres://host/db"])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("unsupported Landscape URL scheme 'postgres'")
  })

  it("refuses --dry-run together with --execute (exit 2)", async () => {
    const r = await runCliIn(work, ["run", "-s", "orders/settings.yaml", "--dry-run", "--execute"])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("--dry-run and --execute contradict each other")
    expect(existsSync(join(work, "orders/runs"))).toBe(false)
  })
})

describe("run --execute and --format", () => {
  it("--execute and -x run the pipeline as without them; --help says they change nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rl-execute-"))
    wide.push(dir)
    const results: Array<unknown> = []
    for (const [flag, sub] of [["--execute", "long"], ["-x", "short"]] as const) {
      const cwd = join(dir, sub)
      mkdirSync(cwd)
      writeFileSync(join(cwd, "settings.yaml"), wideSettings)
      writeFileSync(join(cwd, "input.csv"), "id,amount\n1,50\n2,150\n3,oops\n")
      const r = await runCliIn(cwd, ["run", "-s", "settings.yaml", flag, "--json"])
      expect(r.status, r.stderr).toBe(0)
      const result = JSON.parse(r.stdout)
      expect(result.status).toBe("completed")
      results.push({ ...result, run_id: "" })
      expect(readFileSync(join(cwd, "out/small.csv"), "utf8")).toBe("id,amount\r\n1,50\r\n")
    }
    expect(results[0]).toEqual(results[1])
    const help = await runCliIn(work, ["run", "--help"])
    expect(help.stdout + help.stderr).toContain("runledger executes by default")
  })

  it("--format json is --json (ELSPETH's -f json)", async () => {
    const r = await runCliIn(work, ["run", "-s", "baskets/settings.yaml", "-f", "json"])
    expect(r.status, r.stderr).toBe(0)
    // baskets/input.json holds 3 baskets.
    expect(JSON.parse(r.stdout)).toMatchObject({ status: "completed", rows_processed: 3 })
  })
})

describe("plugins list", () => {
  it("prints what plugins prints, with --json and --type too", async () => {
    const plain = await runCliIn(work, ["plugins"])
    const list = await runCliIn(work, ["plugins", "list"])
    expect(list.status).toBe(0)
    expect(list.stdout).toBe(plain.stdout)
    expect(list.stdout).toContain("csv")
    const json = await runCliIn(work, ["plugins", "list", "--json"])
    expect(json.stdout).toBe((await runCliIn(work, ["plugins", "--json"])).stdout)
    const all = JSON.parse(json.stdout) as Array<{ kind: string }>
    const sinks = JSON.parse((await runCliIn(work, ["plugins", "list", "--type", "sink", "--json"])).stdout) as Array<{ kind: string }>
    expect(sinks.length).toBeGreaterThan(0)
    expect(sinks).toEqual(all.filter((p) => p.kind === "sink"))
  })
})

describe("--database and -d for --db", () => {
  const db = () => join(work, "ledger", "runs", "audit.db")
  beforeAll(async () => {
    const r = await runCliIn(work, ["run", "-s", "ledger/settings.yaml", "--quiet"])
    expect(r.status, r.stderr).toBe(0)
  })

  it("explain: --database, -d, -r, -t and --no-tui give what --db, --run and --token give", async () => {
    const base = await runCliIn(work, ["explain", "--db", db(), "--run", "latest", "--row", "2", "--json"])
    expect(base.status, base.stderr).toBe(0)
    for (const args of [["--database", db()], ["-d", db()]]) {
      const r = await runCliIn(work, ["explain", ...args, "-r", "latest", "--row", "2", "--json", "--no-tui"])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toBe(base.stdout)
    }
    const token = JSON.parse(base.stdout).token_id as string
    expect(token).toMatch(/^tok_/)
    const byToken = await runCliIn(work, ["explain", "-d", db(), "-r", "latest", "-t", token, "--json"])
    expect(byToken.status, byToken.stderr).toBe(0)
    expect(JSON.parse(byToken.stdout).token_id).toBe(token)
    const missing = await runCliIn(work, ["explain", "--database", join(work, "nope.db"), "--run", "latest", "--row", "0"])
    expect(missing.status).toBe(2)
    expect(missing.stderr).toContain("no Landscape at")
  })

  it("runs and export take them too", async () => {
    const runs = await runCliIn(work, ["runs", "--db", db(), "--json"])
    expect((await runCliIn(work, ["runs", "--database", db(), "--json"])).stdout).toBe(runs.stdout)
    expect((await runCliIn(work, ["runs", "-d", db(), "--json"])).stdout).toBe(runs.stdout)
    const out = join(work, "ledger-export.json")
    const r = await runCliIn(work, ["export", "-d", db(), "--run", "latest", "--out", out])
    expect(r.status, r.stderr).toBe(0)
    expect(JSON.parse(readFileSync(out, "utf8")).length).toBeGreaterThan(0)
  })
})

describe("validate --graph", () => {
  // A copy of its own: no other test has run these fixtures in it.
  const fresh = pipelineFixtures()
  afterAll(() => rmSync(fresh, { recursive: true, force: true }))
  const treeLine = /^(source|transform|aggregation|gate|coalesce|sink)\b|^[│ ]*[├└]─ \S+ \[(move|copy|divert)\] → /

  it("prints the DAG as a tree on stdout, the verdict on stderr", async () => {
    const r = await runCliIn(fresh, ["validate", "-s", "orders/settings.yaml", "--graph"])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toContain("orders/settings.yaml: valid")
    const lines = r.stdout.trimEnd().split("\n")
    expect(lines[0]).toBe("source (csv)")
    for (const l of lines) expect(l).toMatch(treeLine)
    expect(r.stdout).toContain("gate big_orders")
    expect(r.stdout).toMatch(/├─ true \[move\] → sink large \(csv\)|└─ true \[move\] → sink large \(csv\)/)
    expect(r.stdout).toMatch(/[├└]─ false \[move\] → sink small \(csv\)/)
    expect(existsSync(join(fresh, "orders/runs"))).toBe(false)
    expect(existsSync(join(fresh, "orders/output"))).toBe(false)
  })

  it("--graph text is the default; --graph mermaid prints a flowchart", async () => {
    const text = await runCliIn(fresh, ["validate", "-s", "orders/settings.yaml", "--graph", "text"])
    const plain = await runCliIn(fresh, ["validate", "-s", "orders/settings.yaml", "--graph"])
    expect(text.stdout).toBe(plain.stdout)
    const m = await runCliIn(fresh, ["validate", "--graph", "mermaid", "-s", "orders/settings.yaml"])
    expect(m.status, m.stderr).toBe(0)
    const lines = m.stdout.trimEnd().split("\n")
    expect(lines[0]).toBe("flowchart TD")
    expect(m.stdout).toContain(`gate_big_orders{"gate big_orders"}`)
    expect(m.stdout).toMatch(/gate_big_orders -->\|"true"\| sink_large/)
    expect(m.stdout).toMatch(/gate_big_orders -->\|"false"\| sink_small/)
  })

  it("without --graph prints no graph; a stray format or an invalid file exits 2", async () => {
    const plain = await runCliIn(fresh, ["validate", "-s", "orders/settings.yaml"])
    expect(plain.status).toBe(0)
    expect(plain.stdout).toBe("orders/settings.yaml: valid — " + plain.stdout.split(" — ")[1])
    expect(plain.stdout).not.toMatch(/^source/m)
    const stray = await runCliIn(fresh, ["validate", "-s", "orders/settings.yaml", "mermaid"])
    expect(stray.status).toBe(2)
    expect(stray.stderr).toContain("give --graph mermaid")
    const unknown = await runCliIn(fresh, ["validate", "-s", "orders/settings.yaml", "--graph", "dot"])
    expect(unknown.status).toBe(2)
    const dir = wideDir()
    wide.push(dir)
    writeFileSync(join(dir, "settings.yaml"), wideSettings.replace("routes: {\"true\": big", "routes: {\"true\": huge"))
    const invalid = await runCliIn(dir, ["validate", "-s", "settings.yaml", "--graph"])
    expect(invalid.status).toBe(2)
    expect(invalid.stdout).toBe("")
    expect(invalid.stderr).toContain("huge")
  })
})
