/**
 * Issue loop benchmark: engine throughput and overhead per issue with trivial
 * commands, next to the same processes spawned by a plain shell loop, and the time
 * from a session_end timeout to the last process of the group being gone.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect, Either, Layer, ManagedRuntime } from "effect"
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { LoopRecorderSql } from "../src/landscape/loop-recorder.js"
import { LandscapeSql } from "../src/landscape/sqlite.js"
import { makeRunAbort } from "../src/loop/abort.js"
import { parseLoopConfig } from "../src/loop/config.js"
import { runLoop } from "../src/loop/coordinator.js"
import { CommandFixer } from "../src/loop/fixer.js"
import { boundsFrom } from "../src/loop/lifecycle.js"
import type { StageContext } from "../src/loop/results.js"
import { runSessionEnd } from "../src/loop/session-end.js"
import { groupMembers } from "../src/loop/supervisor.js"
import { NoFixer } from "../src/services/fixer.js"
import { TelemetryNoop } from "../src/services/telemetry.js"

const ISSUES = 200
const tmp = (p: string) => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), p))

const makeRepo = () => {
  const dir = tmp("loop-bench-repo-")
  const git = (...args: Array<string>) => execFileSync("git", args, { cwd: dir, stdio: "ignore" })
  git("init", "-q", "-b", "main")
  git("config", "user.name", "bench")
  git("config", "user.email", "bench@example.invalid")
  NodeFs.writeFileSync(NodePath.join(dir, "README"), "bench\n")
  git("add", "README")
  git("commit", "-q", "-m", "init")
  return dir
}

const engineRun = async (maxAgents: number) => {
  const dir = tmp("loop-bench-")
  const repo = makeRepo()
  const issues = Array.from({ length: ISSUES }, (_, i) => `- {id: I-${i}, title: issue ${i}}`).join("\n")
  NodeFs.writeFileSync(NodePath.join(dir, "issues.yaml"), issues + "\n")
  const config = Either.getOrThrow(parseLoopConfig({
    repo,
    issues: "issues.yaml",
    workdir: NodePath.join(dir, "work"),
    max_agents: maxAgents,
    implementer: { command: "true" },
    commands: { check: "true" },
    gate: { commands: ["check"], require_commit: false },
    validation_triggers: { session_end: { commands: [{ ref: "check" }] } }
  }, NodePath.join(dir, "loop.yaml"), dir))
  const layer = Layer.mergeAll(
    CommandFixer(config).pipe(Layer.provide(NodeContext.layer)),
    TelemetryNoop,
    LoopRecorderSql.pipe(Layer.provide(LandscapeSql(NodePath.join(dir, "runledger.db"))), Layer.orDie),
    NodeContext.layer
  )
  const started = performance.now()
  const result = await Effect.runPromise(runLoop(config).pipe(Effect.provide(layer)))
  const ms = performance.now() - started
  if (result.counts.success !== ISSUES) throw new Error(`bench run: ${result.counts.success}/${ISSUES} succeeded`)
  NodeFs.rmSync(dir, { recursive: true, force: true })
  NodeFs.rmSync(repo, { recursive: true, force: true })
  return ms
}

/** The same processes (worktree add/remove, three `sh -c true` per issue) from one bash loop. */
const shellBaseline = () => {
  const repo = makeRepo()
  const wt = tmp("loop-bench-wt-")
  const script = `
    for i in $(seq 1 ${ISSUES}); do
      git -C "$1" worktree add -q -b "b$i" "$2/w$i" HEAD
      (cd "$2/w$i" && /bin/sh -c true && /bin/sh -c true && /bin/sh -c true)
      git -C "$1" worktree remove --force "$2/w$i"
    done`
  const started = performance.now()
  execFileSync("bash", ["-c", script, "bash", repo, wt], { stdio: "ignore" })
  const ms = performance.now() - started
  NodeFs.rmSync(repo, { recursive: true, force: true })
  NodeFs.rmSync(wt, { recursive: true, force: true })
  return ms
}

/** session_end timeout → group gone, for a group whose members all ignore SIGTERM. */
const timeoutToGone = async (timeoutMs: number, graceMs: number) => {
  const dir = tmp("loop-bench-to-")
  const pidfile = NodePath.join(dir, "pids")
  const stubborn = `trap '' TERM; (trap '' TERM; while :; do sleep 0.05; done) & echo $! >> ${pidfile}; ` +
    `echo $$ >> ${pidfile}; while :; do sleep 0.05; done`
  const config = Either.getOrThrow(parseLoopConfig({
    implementer: { command: "true" },
    commands: { hang: stubborn },
    validation_triggers: { session_end: { timeout: `${timeoutMs}ms`, commands: [{ ref: "hang" }] } }
  }, NodePath.join(dir, "loop.yaml"), dir))
  const program = Effect.gen(function*() {
    const abort = yield* makeRunAbort
    let n = 0
    const ctx: StageContext = {
      runId: "bench",
      issueId: "T",
      cwd: dir,
      env: {},
      logDir: dir,
      graceMs,
      abort,
      emit: () => Effect.void,
      onCommand: () => Effect.void,
      nextLogIndex: () => ++n
    }
    const started = performance.now()
    const result = yield* runSessionEnd({
      ctx,
      config: config.sessionEnd!,
      bounds: boundsFrom(config),
      round: 1,
      codeReview: () => Effect.die("none"),
      fixerCommand: ""
    })
    return { result, elapsed: performance.now() - started }
  })
  const { elapsed, result } = await Effect.runPromise(program.pipe(Effect.provide(Layer.merge(NodeContext.layer, NoFixer))))
  const pids = NodeFs.readFileSync(pidfile, "utf8").trim().split("\n").map(Number)
  const alive = (pid: number) => {
    try {
      const stat = NodeFs.readFileSync(`/proc/${pid}/stat`, "latin1")
      return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
    } catch {
      return false
    }
  }
  const survivors = pids.filter((pid) => alive(pid) || groupMembers(pid).length > 0)
  NodeFs.rmSync(dir, { recursive: true, force: true })
  if (result.status !== "timeout") throw new Error(`expected a timeout, got ${result.status}`)
  return { pastGrace: elapsed - timeoutMs - graceMs, survivors: survivors.length }
}

const PAR_ISSUES = 8
const PAR_AGENTS = 4
const PAR_SLEEP = "0.5"

/** 8 issues whose implementer sleeps, at 4 at once: the shell does them with `xargs -P4`. */
const parallelFixture = (strategy: "merge" | "none" = "none") => {
  const dir = tmp("loop-bench-par-")
  const repo = makeRepo()
  const issues = Array.from({ length: PAR_ISSUES }, (_, i) => `- {id: P-${i}, title: issue ${i}}`).join("\n")
  NodeFs.writeFileSync(NodePath.join(dir, "issues.yaml"), issues + "\n")
  const doc = {
    repo,
    issues: "issues.yaml",
    workdir: NodePath.join(dir, "work"),
    max_agents: PAR_AGENTS,
    implementer: { command: `sleep ${PAR_SLEEP}` },
    commands: { check: "true" },
    gate: { commands: ["check"], require_commit: false },
    validation_triggers: { session_end: { commands: [{ ref: "check" }] } },
    // `none`: the same processes as the shell loop; `merge` (the default) adds a git merge per issue.
    integration: { strategy }
  }
  NodeFs.writeFileSync(NodePath.join(dir, "loop.yaml"), JSON.stringify(doc))
  return { dir, repo, doc }
}

const shellParallel = () => {
  const repo = makeRepo()
  const wt = tmp("loop-bench-parwt-")
  // git's worktree bookkeeping is serialised with flock, as the engine serialises it with a lock.
  const one = `flock "$2/lock" git -C "$1" worktree add -q -b "b$3" "$2/w$3" HEAD && ` +
    `(cd "$2/w$3" && /bin/sh -c "sleep ${PAR_SLEEP}" && /bin/sh -c true && /bin/sh -c true); ` +
    `flock "$2/lock" git -C "$1" worktree remove --force "$2/w$3"`
  const started = performance.now()
  execFileSync("bash", [
    "-c",
    `seq 1 ${PAR_ISSUES} | xargs -P${PAR_AGENTS} -I{} bash -c '${one}' bash "$1" "$2" {}`,
    "bash",
    repo,
    wt
  ], { stdio: "ignore" })
  const ms = performance.now() - started
  NodeFs.rmSync(repo, { recursive: true, force: true })
  NodeFs.rmSync(wt, { recursive: true, force: true })
  return ms
}

/** One run at 4 agents: the Landscape's set-up (a new SQLite file, its migrations) and the run itself, timed apart. */
const engineParallel = async (strategy: "merge" | "none") => {
  const { dir, doc, repo } = parallelFixture(strategy)
  const config = Either.getOrThrow(parseLoopConfig(doc, NodePath.join(dir, "loop.yaml"), dir))
  const layer = Layer.mergeAll(
    CommandFixer(config).pipe(Layer.provide(NodeContext.layer)),
    TelemetryNoop,
    LoopRecorderSql.pipe(Layer.provide(LandscapeSql(NodePath.join(dir, "runledger.db"))), Layer.orDie),
    NodeContext.layer
  )
  const setupStarted = performance.now()
  const runtime = ManagedRuntime.make(layer)
  await runtime.runtime()
  const setup = performance.now() - setupStarted
  const started = performance.now()
  const result = await runtime.runPromise(runLoop(config))
  const ms = performance.now() - started
  await runtime.dispose()
  if (result.counts.success !== PAR_ISSUES) throw new Error(`bench run: ${result.counts.success}/${PAR_ISSUES} succeeded`)
  NodeFs.rmSync(dir, { recursive: true, force: true })
  NodeFs.rmSync(repo, { recursive: true, force: true })
  return { ms, setup }
}

/** The whole CLI process, start-up and Landscape included. */
const cliParallel = () => {
  const { dir, repo } = parallelFixture()
  const bin = NodePath.resolve("dist/bin.js")
  const started = performance.now()
  execFileSync(process.execPath, [bin, "loop", "-c", NodePath.join(dir, "loop.yaml"), "--db", `sqlite:///${NodePath.join(dir, "r.db")}`], {
    stdio: "ignore",
    cwd: dir
  })
  const ms = performance.now() - started
  NodeFs.rmSync(dir, { recursive: true, force: true })
  NodeFs.rmSync(repo, { recursive: true, force: true })
  return ms
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

export const runLoopBench = async (): Promise<void> => {
  console.log(`loop bench: ${ISSUES} issues, trivial commands (implementer, 1 gate command, 1 session_end command)`)
  const baseline = shellBaseline()
  console.log(
    `  plain shell loop (same processes, serial): ${baseline.toFixed(0)} ms, ${(ISSUES / (baseline / 1000)).toFixed(1)} issues/s, ` +
      `${(baseline / ISSUES).toFixed(1)} ms/issue`
  )
  for (const agents of [1, 4, 8]) {
    const ms = await engineRun(agents)
    const perIssue = ms / ISSUES
    console.log(
      `  engine max_agents=${agents}: ${ms.toFixed(0)} ms, ${(ISSUES / (ms / 1000)).toFixed(1)} issues/s, ` +
        `${perIssue.toFixed(1)} ms/issue wall` +
        (agents === 1 ? `, overhead vs shell ${(perIssue - baseline / ISSUES).toFixed(1)} ms/issue (target ≤ 150)` : "")
    )
  }
  console.log(
    `loop bench: ${PAR_ISSUES} issues at ${PAR_AGENTS} agents, implementer \`sleep ${PAR_SLEEP}\`, alternating, 5 trials, medians`
  )
  const shell: Array<number> = []
  const engine: Array<number> = []
  const merged: Array<number> = []
  const setups: Array<number> = []
  const cli: Array<number> = []
  const haveCli = NodeFs.existsSync("dist/bin.js")
  for (let trial = 0; trial < 5; trial++) {
    shell.push(shellParallel())
    const none = await engineParallel("none")
    engine.push(none.ms)
    setups.push(none.setup)
    merged.push((await engineParallel("merge")).ms)
    if (haveCli) cli.push(cliParallel())
  }
  const base = median(shell)
  console.log(`  xargs -P${PAR_AGENTS} (same processes): ${base.toFixed(0)} ms`)
  console.log(
    `  engine in-process, max_agents=${PAR_AGENTS}, integration none (same processes): ${median(engine).toFixed(0)} ms, ` +
      `${(median(engine) / base).toFixed(2)}× the shell (target ≤ 1.20×); ` +
      `+ ${median(setups).toFixed(0)} ms to create the Landscape first: ${((median(engine) + median(setups)) / base).toFixed(2)}×`
  )
  console.log(
    `  engine in-process, max_agents=${PAR_AGENTS}, integration merge (+1 git merge per issue): ${median(merged).toFixed(0)} ms, ` +
      `${(median(merged) / base).toFixed(2)}× the shell`
  )
  if (haveCli) {
    console.log(`  runledger loop (whole CLI process): ${median(cli).toFixed(0)} ms, ${(median(cli) / base).toFixed(2)}× the shell`)
  } else console.log("  runledger loop (whole CLI process): skipped, dist/bin.js not built (npm run build)")
  const samples: Array<number> = []
  let survivors = 0
  for (let i = 0; i < 5; i++) {
    const r = await timeoutToGone(300, 500)
    samples.push(r.pastGrace)
    survivors += r.survivors
  }
  samples.sort((a, b) => a - b)
  console.log(
    `  session_end timeout → last process of the group gone (grace 500 ms, SIGTERM ignored): ` +
      `median ${samples[2]!.toFixed(0)} ms past the grace period, max ${samples[4]!.toFixed(0)} ms (target < 1000 ms); survivors: ${survivors}`
  )
}
