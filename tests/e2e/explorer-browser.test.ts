/**
 * The explorer in a real browser: Debian's headless Chromium (never a downloaded one),
 * driven by playwright-core, walks from the runs list to the demo run, filters its rows
 * to the quarantined one and opens its lineage, asserting the DOM on each page — with
 * JavaScript disabled, since every page must work without it. Screenshots go to
 * test-artifacts/explorer/; with RUNLEDGER_UPDATE_DOCS=1 the run page's is also written
 * to docs/explorer.png, the picture docs/explorer.md shows (so an ordinary test run
 * leaves the checkout clean).
 *
 * Skipped, with the reason printed, where Chromium is not installed (`.ci/run` installs it).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type BrowserContext, chromium } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { REPO } from "../support/cli.js"
import { demoWorkspace, type DemoWorkspace, type Explorer, startExplorer } from "../support/explorer.js"

const CHROMIUM = process.env.RUNLEDGER_CHROMIUM ?? "/usr/bin/chromium"
const HAS_CHROMIUM = existsSync(CHROMIUM)
if (!HAS_CHROMIUM) {
  process.stdout.write(`explorer-browser.test.ts: skipped — no Chromium at ${CHROMIUM} (apt-get install chromium, or set RUNLEDGER_CHROMIUM)\n`)
}

const ARTIFACTS = join(REPO, "test-artifacts/explorer")

describe.skipIf(!HAS_CHROMIUM)("the explorer in headless Chromium", () => {
  let ws: DemoWorkspace
  let explorer: Explorer
  let context: BrowserContext
  let profile = ""

  beforeAll(async () => {
    ws = await demoWorkspace()
    explorer = await startExplorer(ws.dir, ["--db", ws.db])
    profile = mkdtempSync(join(tmpdir(), "rl-chromium-"))
    mkdirSync(ARTIFACTS, { recursive: true })
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      javaScriptEnabled: false,
      viewport: { width: 1280, height: 900 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync"
      ]
    })
  }, 90_000)

  afterAll(async () => {
    await context?.close()
    await explorer?.stop()
    if (profile !== "") rmSync(profile, { recursive: true, force: true })
  })

  it("runs → the run → its quarantined row's lineage", async () => {
    const page = await context.newPage()
    const blocked: Array<string> = []
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) blocked.push(m.text())
    })
    await page.goto(new URL("/", explorer.url).href)
    expect(new URL(page.url()).pathname).toBe("/runs")
    const row = page.locator(`#runs tr[data-run="${ws.runId}"]`)
    await expect(row.locator("td").nth(2).textContent()).resolves.toBe("completed")
    expect(await row.locator("td").nth(5).textContent()).toBe("rows=10 quarantined=1 routed=9")
    await page.screenshot({ path: join(ARTIFACTS, "runs.png"), fullPage: true })

    await row.locator("a").click()
    await page.waitForURL(`**/runs/${ws.runId}`)
    expect(await page.locator("h1").textContent()).toContain(ws.runId)
    // The graph: one box per node, the stylesheet applied (CSP allows the explorer's own CSS).
    expect(await page.locator("svg.dag a.node").count()).toBe(8)
    expect(await page.locator("svg.dag a.node text").allTextContents()).toEqual(expect.arrayContaining(["source", "screen_notes", "amount_router", "quarantine"]))
    expect(await page.locator("header").evaluate((el) => (globalThis as unknown as { getComputedStyle: (e: unknown) => { backgroundColor: string } }).getComputedStyle(el).backgroundColor)).toBe("rgb(31, 41, 55)")
    expect(await page.locator("#sinks tbody tr").count()).toBe(4)
    await page.screenshot({ path: join(ARTIFACTS, "run.png"), fullPage: true })
    if (process.env.RUNLEDGER_UPDATE_DOCS === "1") {
      await page.screenshot({ path: join(REPO, "docs/explorer.png"), clip: { x: 0, y: 0, width: 1280, height: 900 } })
    }

    // Filter the rows with the form (a plain GET, no script).
    await page.locator("form.filters select[name=outcome]").selectOption("QUARANTINED")
    await page.locator("form.filters button").last().click()
    await page.waitForURL(/outcome=QUARANTINED/)
    const rows = page.locator("#row-list tbody tr")
    expect(await rows.count()).toBe(1)
    expect(await rows.first().getAttribute("data-row")).toBe("3")

    await rows.first().locator("td").first().locator("a").click()
    await page.waitForURL(`**/runs/${ws.runId}/rows/3`)
    expect(await page.locator("h1").textContent()).toContain("Row 3")
    expect(await page.locator("#verdict").textContent()).toMatch(/ended QUARANTINED in sink quarantine/)
    expect(await page.locator("#validation-errors tbody td").nth(1).textContent()).toBe("amount: expected float, got 'abc'")
    expect(await page.locator("#steps tbody tr").count()).toBe(1)
    expect(await page.locator("#row-data").textContent()).toContain("\"customer\": \"Diana\"")
    await page.screenshot({ path: join(ARTIFACTS, "lineage.png"), fullPage: true })

    // The token permalink opens the same lineage.
    await page.locator("#verdict a").click()
    await page.waitForURL(/\/tokens\//)
    expect(await page.locator("h1").textContent()).toContain("Row 3")
    expect(blocked).toEqual([])
  }, 60_000)
})
