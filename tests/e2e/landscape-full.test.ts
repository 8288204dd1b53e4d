/**
 * A full disk under the Landscape: the run stops before the sinks hold rows the trail
 * cannot account for, says which database and why, and is resumed once space is freed
 * to the same outputs as an uninterrupted run. Uses a small tmpfs mounted by the test
 * (skipped, with the reason printed, where mounting is not permitted).
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { afterAll, describe, expect, it } from "vitest"
import { runCliIn } from "../support/cli.js"
import { checkInvariantsIn } from "../support/db.js"
import { tempDir } from "../support/pipeline.js"

const root = tempDir("rl-landscape-full-")
const mnt = join(root, "mnt")
mkdirSync(mnt)
const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt]).status === 0
if (!mounted) console.log(`skipped: Landscape disk-full test — mounting a tmpfs at ${mnt} is not permitted here`)
afterAll(() => {
  if (mounted) spawnSync("umount", [mnt])
  rmSync(root, { recursive: true, force: true })
})

const cli = (dir: string, args: ReadonlyArray<string>) => runCliIn(dir, args, undefined, 120_000)

const settings = (db: string) => `
source:
  plugin: csv
  options:
    path: input.csv
    schema: {mode: fixed, fields: ["id: int", "name: str", "amount: int"]}
    on_validation_failure: discard
gates:
  - name: large
    condition: "row['amount'] > 900"
    routes: {"true": large, "false": continue}
sinks:
  regular: {plugin: csv, options: {path: output/regular.csv, schema: {mode: observed}}}
  large: {plugin: json, options: {path: output/large.json, schema: {mode: observed}}}
default_sink: regular
checkpoint: {frequency: every_n, checkpoint_interval: 1000}
landscape: {url: "${db}"}
`

const project = (name: string, db: string): string => {
  const dir = join(root, name)
  mkdirSync(dir)
  const lines = ["id,name,amount"]
  for (let i = 0; i < 20_000; i++) lines.push(`${i},n${i},${(i * 37) % 1000}`)
  writeFileSync(join(dir, "input.csv"), lines.join("\n") + "\n")
  writeFileSync(join(dir, "settings.yaml"), settings(db))
  return dir
}

describe.skipIf(!mounted)("a full disk under the Landscape", () => {
  it("stops the run naming the database, and resume finishes it once space is freed", async () => {
    const reference = project("reference", "sqlite:///runs/audit.db")
    expect((await cli(reference, ["run", "-s", "settings.yaml", "--quiet"])).status).toBe(0)

    const db = join(mnt, "audit.db")
    const dir = project("full", `sqlite:///${db}`)
    const full = await cli(dir, ["run", "-s", "settings.yaml", "--quiet"])
    expect(full.status, full.stderr).toBe(1)
    expect(full.stderr).toContain(`writing the audit trail of ${db}: database or disk is full`)
    expect(full.stderr).toContain("can be resumed from its last checkpoint")
    expect(full.stderr).not.toContain("internal error")

    // Nothing in the sinks past what the trail can account for: the next checkpoint's rows at most.
    const trail = new Database(db, { readonly: true })
    const recorded = (trail.prepare("SELECT COUNT(*) AS n FROM token_outcomes WHERE sink_name = 'regular'").get() as { n: number }).n
    trail.close()
    const inFile = readFileSync(join(dir, "output/regular.csv"), "utf8").trim().split("\n").length - 1
    expect(inFile).toBeGreaterThanOrEqual(recorded)
    expect(inFile - recorded).toBeLessThanOrEqual(1_000)

    expect(spawnSync("mount", ["-o", "remount,size=200m", mnt]).status).toBe(0)
    const resumed = await cli(dir, ["resume", "latest", "-s", "settings.yaml", "--json"])
    expect(resumed.status, resumed.stderr).toBe(0)
    for (const f of ["output/regular.csv", "output/large.json"]) {
      expect(readFileSync(join(dir, f), "latin1"), f).toBe(readFileSync(join(reference, f), "latin1"))
    }
    const result = JSON.parse(resumed.stdout) as { run_id: string; status: string; rows_processed: number }
    expect(result).toMatchObject({ status: "completed", rows_processed: 20_000 })
    await checkInvariantsIn(db, result.run_id)
  }, 180_000)
})
