/**
 * `runledger serve` through HTTP, without a browser: the built CLI serves a Landscape
 * that real runs wrote (the demo pipeline with a row holding markup, and an issue
 * loop), and the tests fetch its pages and its JSON API on loopback — escaping, the
 * Content-Security-Policy, paging, 404s, 405 for anything but GET/HEAD, the token, the
 * export download (signed and verified, or unsigned), and a Landscape that stays as it was.
 */
import { createHash } from "node:crypto"
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { request } from "node:http"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as YAML from "yaml"
import { fixture, makeRepo } from "../loop/helpers.js"
import { runCli, runCliIn } from "../support/cli.js"
import { demoWorkspace, type DemoWorkspace, type Explorer, startExplorer } from "../support/explorer.js"
import { pipelineFixtures } from "../support/fixtures.js"

const SCRIPT = "<script>alert(1)</script>"
const KEY = "explorer-test-signing-key"

interface RowsPage {
  readonly rows: ReadonlyArray<{ row_index: number; source_data_json: string; outcomes: ReadonlyArray<{ outcome: string; sink_name: string | null; token_id: string }> }>
  readonly next: number | null
  readonly next_url: string | null
}

const sha = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex")

describe("runledger serve (HTTP)", () => {
  let ws: DemoWorkspace
  let loopRunId = ""
  let explorer: Explorer
  let dbHashBefore = ""

  beforeAll(async () => {
    // Row 10 holds markup in a text field; it goes through like any other row.
    ws = await demoWorkspace([`11,${SCRIPT},42.00,retail,"<img src=x onerror=alert(2)>"`])
    const repo = makeRepo()
    writeFileSync(join(ws.dir, "issues.yaml"), YAML.stringify([{ id: "A-1", title: "first <b>bold</b>" }]))
    writeFileSync(join(ws.dir, "loop.yaml"), YAML.stringify({
      repo,
      issues: "issues.yaml",
      workdir: "work",
      kill_grace: "300ms",
      implementer: { command: fixture("implementer-commit.sh") },
      commands: { test: "echo testing-output; true" },
      gate: { commands: ["test"] },
      validation_triggers: { run_end: { commands: [{ command: "echo run-end-output" }] } }
    }))
    const loop = await runCliIn(ws.dir, ["loop", "-c", "loop.yaml", "--db", ws.db, "--json"])
    expect(loop.status, loop.stderr).toBe(0)
    loopRunId = (JSON.parse(loop.stdout) as { run_id: string }).run_id
    dbHashBefore = sha(ws.dbPath)
    explorer = await startExplorer(ws.dir, ["--db", ws.db], { RUNLEDGER_SIGNING_KEY: KEY })
  }, 90_000)

  afterAll(async () => {
    await explorer?.stop()
  })

  const get = (path: string, init?: RequestInit) => fetch(new URL(path, explorer.url), { redirect: "manual", ...init })

  it("prints the bound loopback URL on stdout and answers with a strict CSP on every response", async () => {
    expect(explorer.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)
    for (const path of ["/runs", `/runs/${ws.runId}`, "/api/runs", "/nowhere", "/assets/explorer.css"]) {
      const r = await get(path)
      const csp = r.headers.get("content-security-policy") ?? ""
      expect(csp).toContain("default-src 'none'")
      expect(csp).not.toContain("unsafe-inline")
      expect(csp).not.toContain("script-src")
      expect(r.headers.get("x-content-type-options")).toBe("nosniff")
    }
  })

  it("runs: pipelines and loops, with status and counts; filter by status and kind; JSON beside it", async () => {
    const html = await (await get("/runs")).text()
    expect(html).toContain(`href="/runs/${ws.runId}"`)
    expect(html).toContain(`href="/loops/${loopRunId}"`)
    expect(html).toMatch(/rows=11 quarantined=1 routed=10/)
    const api = await (await get("/api/runs")).json() as { total: number; runs: ReadonlyArray<{ run_id: string; kind: string; status: string }> }
    expect(api.total).toBe(2)
    expect(api.runs.map((r) => [r.run_id, r.kind, r.status]).sort()).toEqual(
      [[ws.runId, "pipeline", "completed"], [loopRunId, "loop", "completed"]].sort()
    )
    const loops = await (await get("/api/runs?kind=loop")).json() as { total: number }
    expect(loops.total).toBe(1)
    const failed = await (await get("/runs?status=failed")).text()
    expect(failed).toContain("No runs match the filter")
    const bad = await get("/api/runs?status=exploded")
    expect(bad.status).toBe(400)
    expect((await bad.json() as { error: string }).error).toContain("exploded")
  })

  it("a run: the DAG laid out as SVG with a box per recorded node, per-edge counts, sinks, export, settings", async () => {
    const html = await (await get(`/runs/${ws.runId}`)).text()
    const detail = await (await get(`/api/runs/${ws.runId}`)).json() as {
      nodes: ReadonlyArray<{ node_id: string }>
      edges: ReadonlyArray<{ edge_id: string; label: string; to_node_id: string }>
      counts: { edges: Record<string, number | null> }
      sinks: ReadonlyArray<{ sink_name: string; outcome: string; n: number }>
    }
    expect(html.match(/<a href="#node-[^"]+" class="node"/g)?.length).toBe(detail.nodes.length)
    expect(html.match(/<g class="edge /g)?.length).toBe(detail.edges.length)
    // dagre placed the boxes: every rect has its own position.
    const positions = [...html.matchAll(/<rect x="([\d.-]+)" y="([\d.-]+)"/g)].map((m) => `${m[1]},${m[2]}`)
    expect(new Set(positions).size).toBe(detail.nodes.length)
    const quarantineEdge = detail.edges.find((e) => e.label === "on_validation_failure")!
    expect(detail.counts.edges[quarantineEdge.edge_id]).toBe(1)
    expect(html).toContain("on_validation_failure (1)")
    expect(detail.sinks).toContainEqual({ sink_name: "quarantine", outcome: "QUARANTINED", n: 1 })
    expect(html).toContain("Download the signed export")
    expect(html).toContain("amount_router")
    expect(html).toContain("row[&#39;amount&#39;] &gt;= 1000")
  })

  it("escapes every recorded value: a row holding <script> renders as text", async () => {
    const run = await (await get(`/runs/${ws.runId}?from=10`)).text()
    const row = await (await get(`/runs/${ws.runId}/rows/10`)).text()
    for (const page of [run, row]) {
      expect(page).not.toContain(SCRIPT)
      expect(page).not.toContain("<img src=x")
      expect(page).not.toMatch(/<script/i)
    }
    expect(row).toContain("&lt;script&gt;alert(1)&lt;/script&gt;")
    expect(run).toContain("&lt;script&gt;alert(1)&lt;/script&gt;")
    const loop = await (await get(`/loops/${loopRunId}`)).text()
    expect(loop).toContain("first &lt;b&gt;bold&lt;/b&gt;")
  })

  it("rows are paged on the server: keyset pages that follow on, outcome filters, a bounded page size", async () => {
    const first = await (await get(`/api/runs/${ws.runId}/rows?limit=4`)).json() as RowsPage
    expect(first.rows.map((r) => r.row_index)).toEqual([0, 1, 2, 3])
    expect(first.next).toBe(4)
    const second = await (await get(first.next_url!)).json() as RowsPage
    expect(second.rows.map((r) => r.row_index)).toEqual([4, 5, 6, 7])
    const last = await (await get(`/api/runs/${ws.runId}/rows?limit=4&from=8`)).json() as RowsPage
    expect(last.rows.map((r) => r.row_index)).toEqual([8, 9, 10])
    expect(last.next).toBeNull()
    const quarantined = await (await get(`/api/runs/${ws.runId}/rows?outcome=QUARANTINED`)).json() as RowsPage
    expect(quarantined.rows.map((r) => [r.row_index, r.outcomes[0]!.outcome, r.outcomes[0]!.sink_name])).toEqual([[3, "QUARANTINED", "quarantine"]])
    const large = await (await get(`/api/runs/${ws.runId}/rows?sink=large`)).json() as RowsPage
    expect(large.rows.map((r) => r.row_index)).toEqual([1, 5, 7])
    const byField = await (await get(`/api/runs/${ws.runId}/rows?field=customer&value=Eve`)).json() as RowsPage
    expect(byField.rows.map((r) => r.row_index)).toEqual([4])
    const page = await (await get(`/runs/${ws.runId}?outcome=ROUTED&from=2`)).text()
    expect([...page.matchAll(/<tr data-row="(\d+)"/g)].map((m) => Number(m[1]))).toEqual([2, 4, 5, 6, 7, 8, 9, 10])
    expect((await get(`/api/runs/${ws.runId}/rows?limit=-3`)).status).toBe(400)
    expect((await get(`/api/runs/${ws.runId}/rows?outcome=LOST`)).status).toBe(400)
  })

  it("lineage of a quarantined row: the validation error, the outcome and its reason, the sink write; permalink per token", async () => {
    const rowPage = await (await get(`/runs/${ws.runId}/rows/3`)).text()
    expect(rowPage).toMatch(/ended <span class="outcome-QUARANTINED">QUARANTINED<\/span> in sink <b>quarantine<\/b>/)
    expect(rowPage).toContain("amount: expected float, got &#39;abc&#39;")
    expect(rowPage).toContain("validation_failed")
    const lineage = await (await get(`/api/runs/${ws.runId}/rows/3`)).json() as { token_id: string; row: { row_id: string }; outcome: { outcome: string } }
    expect(lineage.outcome.outcome).toBe("QUARANTINED")
    const byToken = await get(`/runs/${ws.runId}/tokens/${lineage.token_id}`)
    expect(byToken.status).toBe(200)
    expect(await byToken.text()).toContain(lineage.row.row_id)
    // A routed row: each node state with hashes and the gate's condition with its value.
    const routed = await (await get(`/runs/${ws.runId}/rows/1`)).text()
    expect(routed).toMatch(/condition <code>row\[&#39;amount&#39;\] &gt;= 1000<\/code> was <code>&quot;true&quot;<\/code>/)
    expect(routed.match(/<tr class="step"/g)?.length).toBe(4)
  })

  it("a loop run: issues × stages with status and attempts, command output tails, run_end", async () => {
    const html = await (await get(`/loops/${loopRunId}`)).text()
    expect(html).toMatch(/<tr data-issue="A-1">/)
    expect(html).toMatch(/<th>implementer<\/th>/)
    expect(html).toMatch(/<th>gate<\/th>/)
    expect(html).toContain("testing-output")
    expect(html).toContain("run-end-output")
    expect(html).toContain("integration branch")
    const download = /<a id="download-export" href="([^"]+)"/.exec(html)![1]!
    const exported = await get(download)
    expect(exported.status).toBe(200)
    expect(exported.headers.get("x-runledger-signed")).toBe("true")
    expect(((await exported.json()) as ReadonlyArray<{ record_type: string }>)[0]!.record_type).toBe("loop_run")
    const redirect = await get(`/runs/${loopRunId}`)
    expect(redirect.status).toBe(303)
    expect(redirect.headers.get("location")).toBe(`/loops/${loopRunId}`)
    const api = await (await get(`/api/loops/${loopRunId}`)).json() as { issues: ReadonlyArray<{ issue_id: string; status: string }> }
    expect(api.issues.map((i) => [i.issue_id, i.status])).toEqual([["A-1", "success"]])
  })

  it("404 for an unknown run, row or path; 405 for anything but GET and HEAD", async () => {
    for (const path of ["/runs/run_nope", "/api/runs/run_nope", `/runs/${ws.runId}/rows/999`, `/api/runs/${ws.runId}/tokens/tok_nope`, "/loops/nope", "/elsewhere"]) {
      const r = await get(path)
      expect(r.status, path).toBe(404)
    }
    expect(await (await get("/api/runs/run_nope")).json()).toMatchObject({ status: 404, error: expect.stringContaining("run_nope") })
    for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
      const r = await get(`/api/runs/${ws.runId}`, { method })
      expect(r.status, method).toBe(405)
      expect(r.headers.get("allow")).toBe("GET, HEAD")
    }
    const head = await get("/runs", { method: "HEAD" })
    expect(head.status).toBe(200)
  })

  it("without a token, answers only requests addressed to loopback (a rebound name gets 403)", async () => {
    const status = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const u = new URL("/runs", explorer.url)
        const req = request({ hostname: u.hostname, port: u.port, path: u.pathname, headers: { host } }, (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        req.on("error", reject)
        req.end()
      })
    expect(await status(`localhost:${new URL(explorer.url).port}`)).toBe(200)
    expect(await status(`127.0.0.1:${new URL(explorer.url).port}`)).toBe(200)
    expect(await status("evil.example:80")).toBe(403)
  })

  it("downloads the export signed with RUNLEDGER_SIGNING_KEY, which `runledger verify` accepts", async () => {
    const r = await get(`/runs/${ws.runId}/export.json`)
    expect(r.status).toBe(200)
    expect(r.headers.get("content-disposition")).toContain(`${ws.runId}.signed.json`)
    expect(r.headers.get("x-runledger-signed")).toBe("true")
    const file = join(ws.dir, "downloaded.json")
    writeFileSync(file, Buffer.from(await r.arrayBuffer()))
    const verify = runCli(["verify", file], { cwd: ws.dir, env: { RUNLEDGER_SIGNING_KEY: KEY } })
    expect(verify.status, verify.stderr).toBe(0)
    expect(existsSync(join(ws.dir, "runledger.db"))).toBe(false)
  })

  it("left the Landscape as it was", () => {
    expect(sha(ws.dbPath)).toBe(dbHashBefore)
  })
})

describe("runledger serve: safety at start and the token", () => {
  let ws: DemoWorkspace

  beforeAll(async () => {
    ws = await demoWorkspace()
  }, 60_000)

  it("a Landscape that does not exist: exit 2 naming the path, nothing created", async () => {
    const r = await runCliIn(ws.dir, ["serve", "--db", "missing/audit.db", "--port", "0"])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(join(ws.dir, "missing/audit.db"))
    expect(r.stdout).toBe("")
    expect(existsSync(join(ws.dir, "missing"))).toBe(false)
  })

  it("a non-loopback --host without a token is refused (exit 2) before anything listens", async () => {
    const r = await runCliIn(ws.dir, ["serve", "--db", ws.db, "--host", "0.0.0.0", "--port", "0"])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain("--token")
    expect(r.stdout).toBe("")
  })

  it("with --token every request needs it: Bearer, ?token= (which sets a cookie) or the cookie; no signing key means an unsigned offer", async () => {
    const explorer = await startExplorer(ws.dir, ["--db", ws.db, "--token", "s3cret"])
    try {
      const url = (p: string) => new URL(p, explorer.url)
      expect((await fetch(url("/runs"))).status).toBe(401)
      expect((await fetch(url("/api/runs"), { headers: { authorization: "Bearer wrong" } })).status).toBe(401)
      expect((await fetch(url("/api/runs?token=wrong"))).status).toBe(401)
      expect((await fetch(url("/api/runs"), { headers: { authorization: "Bearer s3cret" } })).status).toBe(200)
      const viaQuery = await fetch(url("/runs?token=s3cret"))
      expect(viaQuery.status).toBe(200)
      const cookie = viaQuery.headers.get("set-cookie") ?? ""
      expect(cookie).toMatch(/^runledger_token=s3cret; Path=\/; HttpOnly; SameSite=Strict/)
      const withCookie = await fetch(url(`/runs/${ws.runId}`), { headers: { cookie: cookie.split(";")[0]! } })
      expect(withCookie.status).toBe(200)
      const page = await withCookie.text()
      expect(page).toContain("RUNLEDGER_SIGNING_KEY is not set")
      expect((await fetch(url(`/runs/${ws.runId}/export.json`), { headers: { cookie: cookie.split(";")[0]! } })).status).toBe(409)
      const unsigned = await fetch(url(`/runs/${ws.runId}/export.json?unsigned=1`), { headers: { cookie: cookie.split(";")[0]! } })
      expect(unsigned.status).toBe(200)
      expect(unsigned.headers.get("x-runledger-signed")).toBe("false")
      const records = await unsigned.json() as ReadonlyArray<{ record_type: string }>
      expect(records[0]!.record_type).toBe("run")
      expect(records.filter((r) => r.record_type === "row").length).toBe(10)
    } finally {
      await explorer.stop()
    }
  })
})

describe("runledger serve: rows with several tokens (explode, fork and coalesce)", () => {
  let work = ""
  let explorer: Explorer | undefined
  let basketsRun = ""

  beforeAll(async () => {
    work = pipelineFixtures()
    for (const fixture of ["baskets", "forks"]) {
      const r = await runCliIn(work, ["run", "-s", `${fixture}/settings.yaml`, "--json", "--quiet"])
      expect(r.status, r.stderr).toBe(0)
      if (fixture === "baskets") basketsRun = (JSON.parse(r.stdout) as { run_id: string }).run_id
    }
  }, 60_000)

  afterAll(async () => {
    await explorer?.stop()
    if (work !== "") rmSync(work, { recursive: true, force: true })
  })

  it("an exploded row lists its tokens (300), each a permalink whose page shows the token tree", async () => {
    explorer = await startExplorer(work, ["--db", "baskets/runs/audit.db"])
    const get = (path: string) => fetch(new URL(path, explorer!.url))
    const ambiguous = await get(`/runs/${basketsRun}/rows/0`)
    expect(ambiguous.status).toBe(300)
    const html = await ambiguous.text()
    const tokens = [...html.matchAll(/href="\/runs\/[^/]+\/tokens\/(tok_\w+)"/g)].map((m) => m[1]!)
    expect(tokens).toHaveLength(2)
    const page = await (await get(`/runs/${basketsRun}/tokens/${tokens[1]}`)).text()
    expect(page).toMatch(/<span class="outcome-EXPANDED">EXPANDED<\/span>/)
    expect(page).toMatch(new RegExp(`<li class="selected"><a class="mono" href="/runs/${basketsRun}/tokens/${tokens[1]}">`))
    expect(page).toContain("json_explode_0")
    await explorer.stop()
    explorer = undefined
  })

  it("a forked and coalesced row: the fork and coalesce groups in the token tree", async () => {
    explorer = await startExplorer(work, ["--db", "forks/runs/audit.db"])
    const api = await (await fetch(new URL("/api/runs", explorer.url))).json() as { runs: ReadonlyArray<{ run_id: string }> }
    const runId = api.runs[0]!.run_id
    const forked = await (await fetch(new URL(`/api/runs/${runId}/rows?outcome=FORKED`, explorer.url))).json() as RowsPage
    expect(forked.rows.length).toBeGreaterThan(0)
    const first = forked.rows[0]!
    const r = await fetch(new URL(`/runs/${runId}/rows/${first.row_index}`, explorer.url))
    const html = await r.text()
    expect(html).toContain("· fork grp_")
    expect(html).toMatch(/outcome-FORKED/)
    expect(html).toMatch(/ · branch (left|right)/)
    expect(html).toMatch(/ · coalesced \w+/)
  })
})
