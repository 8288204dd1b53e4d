/**
 * Ties every supervised command to runledger's life. Node cannot have the kernel kill
 * a child when its parent dies (PR_SET_PDEATHSIG), so one small watchdog process
 * (watchdog-process.ts) per runledger process holds the read end of a pipe and is told,
 * one line each, when a command is about to start, which process group it runs in and
 * when that group is gone. When runledger dies, even by SIGKILL, the kernel closes the
 * pipe and the watchdog kills the groups still listed (SIGTERM, SIGKILL after the
 * grace period). It runs in a session of its own, so Ctrl-C at the terminal reaches
 * runledger and not it.
 *
 * Each group is also recorded in the Landscape as its command starts
 * (`LoopRecorder.startProcess`), so that when the watchdog could not do its job (it was
 * killed too, or the machine lost power) the next command that opens the Landscape can
 * kill the survivors of the dead run.
 *
 * Cost per command: three short writes on the pipe and two small rows; no process.
 */
import { Clock, Context, DateTime, Effect, Layer } from "effect"
import * as NodeChildProcess from "node:child_process"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs"
import { fileURLToPath } from "node:url"
import { COMMAND_ID_ENV, RUN_ID_ENV } from "../core/process-groups.js"
import { LoopRecorder } from "../services/loop-recorder.js"

/** Who runs a supervised command: what its process record names. */
export interface CommandLabel {
  readonly runId: string
  /** null for the run's own stage (run_end). */
  readonly issueId: string | null
  readonly stage: string
  readonly ref: string
}

/** One command under the watchdog, from just before it starts until its group is gone. */
export interface WatchedCommand {
  /** Added to the command's environment: RUNLEDGER_COMMAND_ID (and RUNLEDGER_RUN_ID). */
  readonly env: Readonly<Record<string, string>>
  /** The command started in process group `pgid`. */
  readonly started: (pgid: number) => Effect.Effect<void>
  /** Its group is gone (also when it never started). */
  readonly ended: Effect.Effect<void>
}

export interface ProcessWatchdogService {
  readonly watch: (command: {
    readonly label: CommandLabel | undefined
    readonly command: string
    readonly logFile: string | undefined
  }) => Effect.Effect<WatchedCommand>
}

/**
 * The watchdog, when one is provided: `supervise` registers each command with it.
 * Layer: `ProcessWatchdogLive` (the CLI's `loop` provides it).
 */
export class ProcessWatchdog extends Context.Tag("runledger/ProcessWatchdog")<ProcessWatchdog, ProcessWatchdogService>() {}

/**
 * The watchdog script: dist/loop/watchdog-process.js in the built package, found beside
 * this module (dist/loop/watchdog.js) or from the bundled CLI, whose code may run from
 * dist/bin.js or from one of its chunks in dist/chunks/.
 */
export const watchdogScript = (): string => {
  const candidates = ["./watchdog-process.js", "./loop/watchdog-process.js", "../loop/watchdog-process.js"]
    .map((relative) => fileURLToPath(new URL(relative, import.meta.url)))
  return candidates.find((path) => NodeFs.existsSync(path)) ?? candidates[0]!
}

const isoNow = Effect.map(Clock.currentTimeMillis, (ms) => DateTime.formatIso(DateTime.unsafeMake(ms)))

const warn = (message: string) => {
  process.stderr.write(`warning: ${message}\n`)
}

/** The running watchdog process and the pipe to it. */
interface Pipe {
  readonly write: (line: string) => void
  readonly close: () => void
  readonly pid: number | undefined
}

const startWatchdog = (script: string, graceMs: number): Pipe => {
  let open = true
  let closing = false
  const lost = (why: string) => {
    if (!open) return
    open = false
    if (!closing) warn(`the process watchdog ${why}; commands started from now on are not killed if runledger dies`)
  }
  if (!NodeFs.existsSync(script)) {
    lost(`cannot start (${script} is missing)`)
    return { write: () => {}, close: () => {}, pid: undefined }
  }
  const child = NodeChildProcess.spawn(process.execPath, [script, String(process.pid), String(graceMs)], {
    // A session of its own: no terminal signal (Ctrl-C, hang-up) reaches it.
    detached: true,
    stdio: ["pipe", "ignore", "ignore"],
    cwd: "/"
  })
  // runledger never waits for it: it exits by itself once the pipe closes.
  child.unref()
  child.on("error", (e) => lost(`cannot start (${e.message})`))
  child.on("exit", (code, signal) => lost(`exited (${signal ?? `code ${code}`})`))
  const stdin = child.stdin!
  stdin.on("error", (e) => lost(`cannot be written to (${e.message})`))
  return {
    write: (line) => {
      if (open) stdin.write(line)
    },
    close: () => {
      closing = true
      stdin.end()
    },
    pid: child.pid
  }
}

/**
 * Starts the watchdog process for the scope's lifetime (closing the scope closes the
 * pipe, and the watchdog, with nothing left to kill, exits) and records each command's
 * process group through the LoopRecorder. `graceMs`: the config's `kill_grace`.
 */
export const ProcessWatchdogLive = (
  options: { readonly graceMs: number; readonly script?: string }
): Layer.Layer<ProcessWatchdog, never, LoopRecorder> =>
  Layer.scoped(
    ProcessWatchdog,
    Effect.gen(function*() {
      const recorder = yield* LoopRecorder
      const pipe = yield* Effect.acquireRelease(
        Effect.sync(() => startWatchdog(options.script ?? watchdogScript(), options.graceMs)),
        (p) => Effect.sync(p.close)
      )
      return {
        watch: ({ command, label, logFile }) =>
          Effect.sync((): WatchedCommand => {
            const id = NodeCrypto.randomUUID()
            pipe.write(`S ${id}\n`)
            let recorded = false
            return {
              env: label === undefined ? { [COMMAND_ID_ENV]: id } : { [COMMAND_ID_ENV]: id, [RUN_ID_ENV]: label.runId },
              started: (pgid) =>
                Effect.gen(function*() {
                  pipe.write(`G ${id} ${pgid}\n`)
                  if (label === undefined) return
                  yield* recorder.startProcess({
                    processId: id,
                    runId: label.runId,
                    issueId: label.issueId,
                    stage: label.stage,
                    ref: label.ref,
                    command,
                    logFile: logFile ?? null,
                    pgid,
                    startedAt: yield* isoNow
                  }).pipe(Effect.orDie)
                  recorded = true
                }),
              ended: Effect.gen(function*() {
                if (recorded) yield* recorder.endProcess(id, yield* isoNow).pipe(Effect.orDie)
                pipe.write(`E ${id}\n`)
              })
            }
          })
      }
    })
  )
