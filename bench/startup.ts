/**
 * `npm run bench -- startup`: how long the CLI takes to start and do nothing much —
 * `runledger --version` and `runledger validate -s examples/demo/settings.yaml` — for
 * the bundled CLI (dist/bin.js, what `npx runledger` runs) and the same CLI unbundled
 * (dist/bin-modules.js, tsc's modules), next to bare `node -e ''`. Whole-process wall
 * time, the variants alternating, medians (--trials=N, default 15).
 */
import { spawnSync } from "node:child_process"
import * as NodeFs from "node:fs"

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

const wall = (args: ReadonlyArray<string>): number => {
  const started = process.hrtime.bigint()
  const r = spawnSync(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" })
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  if (r.status !== 0) throw new Error(`node ${args.join(" ")}: exit ${r.status}: ${r.stderr}`)
  return ms
}

export const runStartupBench = async (): Promise<void> => {
  const trials = Number(process.argv.find((a) => a.startsWith("--trials="))?.slice(9) ?? 15)
  for (const file of ["dist/bin.js", "dist/bin-modules.js"]) {
    if (!NodeFs.existsSync(file)) {
      console.log(`startup bench: ${file} is missing; run npm run build first`)
      return
    }
  }
  const settings = "examples/demo/settings.yaml"
  const variants: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
    ["node -e ''", ["-e", ""]],
    ["bundle: --version", ["dist/bin.js", "--version"]],
    ["modules: --version", ["dist/bin-modules.js", "--version"]],
    [`bundle: validate -s ${settings}`, ["dist/bin.js", "validate", "-s", settings]],
    [`modules: validate -s ${settings}`, ["dist/bin-modules.js", "validate", "-s", settings]]
  ]
  const times = new Map<string, Array<number>>(variants.map(([name]) => [name, []]))
  // One warm-up round (file cache), then alternating trials.
  for (const [, args] of variants) wall(args)
  for (let t = 0; t < trials; t++) {
    for (const [name, args] of variants) times.get(name)!.push(wall(args))
  }
  console.log(`startup bench: whole-process wall time, ${trials} alternating trials, medians`)
  const node = median(times.get("node -e ''")!)
  for (const [name] of variants) {
    const m = median(times.get(name)!)
    const target = name.startsWith("bundle") ? "  (target ≤ 300 ms)" : ""
    console.log(`  ${name.padEnd(50)} ${m.toFixed(0).padStart(5)} ms  (${(m - node).toFixed(0)} ms over bare node)${target}`)
  }
}
