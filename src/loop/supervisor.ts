import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Clock, Data, Duration, Effect, Fiber, Option, Stream } from "effect"
import * as NodeFs from "node:fs"
import { groupMembers } from "../core/process-groups.js"
import { type CommandLabel, ProcessWatchdog } from "./watchdog.js"

export { groupMembers } from "../core/process-groups.js"

/** A command could not be started or its log could not be opened. */
export class SupervisorError extends Data.TaggedError("SupervisorError")<{
  readonly reason: "SpawnFailed" | "LogFailed"
  readonly command: string
  readonly message: string
}> {}

export interface SuperviseSpec {
  /** Shell command line, run with `/bin/sh -c`. */
  readonly command: string
  readonly cwd: string
  /** Added to the inherited environment. */
  readonly env?: Readonly<Record<string, string>>
  /** Per-command timeout; the whole process group is killed when it elapses. */
  readonly timeoutMs?: number | undefined
  /** Time between SIGTERM and SIGKILL. */
  readonly graceMs: number
  /** Appends stdout and stderr here as they arrive. */
  readonly logFile?: string | undefined
  /** Bytes of combined output kept in memory (default 8 KiB). */
  readonly tailBytes?: number
  /** Polled while waiting for the grace period: true means SIGKILL now. */
  readonly hardKill?: Effect.Effect<boolean>
  /** Who runs the command: names its process group in the Landscape when a ProcessWatchdog is provided. */
  readonly label?: CommandLabel | undefined
}

export interface SuperviseResult {
  readonly pid: number
  /** Null when the process died of a signal (timeout or kill). */
  readonly exitCode: number | null
  readonly signal: string | null
  readonly timedOut: boolean
  readonly durationMs: number
  /** Last bytes of stdout and stderr interleaved as they arrived. */
  readonly outputTail: string
  /** Last bytes of stdout alone (for commands whose stdout is data, like the reviewer). */
  readonly stdoutTail: string
  readonly logFile: string | undefined
}

/** Keeps the last `limit` bytes of a byte stream. */
class Tail {
  private chunks: Array<Uint8Array> = []
  private size = 0
  constructor(private readonly limit: number) {}
  push(chunk: Uint8Array) {
    this.chunks.push(chunk)
    this.size += chunk.length
    while (this.size - (this.chunks[0]?.length ?? 0) >= this.limit && this.chunks.length > 1) {
      this.size -= this.chunks.shift()!.length
    }
  }
  text(): string {
    const all = Buffer.concat(this.chunks)
    return all.subarray(Math.max(0, all.length - this.limit)).toString("utf8")
  }
}

const signalGroup = (pgid: number, signal: NodeJS.Signals) =>
  Effect.sync(() => {
    try {
      process.kill(-pgid, signal)
    } catch {
      // ESRCH: the group is already gone.
    }
  })

const POLL = Duration.millis(10)

const waitGroupGone = (pgid: number, maxMs: number, hardKill: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    const until = (yield* Clock.currentTimeMillis) + maxMs
    while (groupMembers(pgid).length > 0) {
      if ((yield* Clock.currentTimeMillis) >= until || (yield* hardKill)) return false
      yield* Effect.sleep(POLL)
    }
    return true
  })

const never = Effect.succeed(false)

/**
 * SIGTERM to the whole group, up to `graceMs` for it to exit, then SIGKILL.
 * Returns once no live process of the group remains (or after a safety bound).
 * It polls rather than races so that it behaves the same inside a finalizer,
 * where forked fibers could not be interrupted.
 */
export const killProcessGroup = (
  pgid: number,
  graceMs: number,
  hardKill: Effect.Effect<boolean> = never
): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (groupMembers(pgid).length === 0) return
    yield* signalGroup(pgid, "SIGTERM")
    if (yield* waitGroupGone(pgid, graceMs, hardKill)) return
    yield* signalGroup(pgid, "SIGKILL")
    yield* waitGroupGone(pgid, 5000, never)
  })

const signalOf = (message: string): string | null => /signal: (\w+)/.exec(message)?.[1] ?? null

/**
 * Runs one shell command in its own process group. stdout and stderr are drained
 * concurrently into the log file and a bounded in-memory tail. On timeout, and on
 * interruption of the calling fiber, the group gets SIGTERM, then SIGKILL after the
 * grace period; no process of the group outlives this effect. With a ProcessWatchdog
 * provided, none outlives runledger either: the group is registered with the watchdog
 * (and recorded) from its start until it is gone.
 */
export const supervise = Effect.fn("Supervisor.run")(function*(spec: SuperviseSpec) {
  const executor = yield* CommandExecutor.CommandExecutor
  const watchdog = yield* Effect.serviceOption(ProcessWatchdog)
  const started = yield* Clock.currentTimeMillis
  const hardKill = spec.hardKill ?? never
  return yield* Effect.scoped(Effect.gen(function*() {
    const logFd = spec.logFile === undefined ? undefined : yield* Effect.acquireRelease(
      Effect.try({
        try: () => NodeFs.openSync(spec.logFile!, "a"),
        catch: (e) => new SupervisorError({ reason: "LogFailed", command: spec.command, message: String(e) })
      }),
      (fd) => Effect.sync(() => NodeFs.closeSync(fd))
    )
    // Announced before the spawn, so that a crash between the spawn and the next line
    // still leaves the watchdog a way to find the group (the marker in its environment).
    const watched = Option.isSome(watchdog)
      ? yield* watchdog.value.watch({ label: spec.label, command: spec.command, logFile: spec.logFile })
      : undefined
    if (watched !== undefined) yield* Effect.addFinalizer(() => watched.ended)
    const command = Command.make("/bin/sh", "-c", spec.command).pipe(
      Command.workingDirectory(spec.cwd),
      Command.env(watched === undefined ? spec.env ?? {} : { ...spec.env, ...watched.env })
    )
    const proc = yield* executor.start(command).pipe(
      Effect.mapError((e) => new SupervisorError({ reason: "SpawnFailed", command: spec.command, message: e.message }))
    )
    const pgid = proc.pid
    // Registered after the platform's own release, so it runs first: the platform
    // only sends SIGTERM and then waits forever for a child that ignores it.
    yield* Effect.addFinalizer(() => killProcessGroup(pgid, spec.graceMs, hardKill))
    if (watched !== undefined) yield* watched.started(pgid)

    const tail = new Tail(spec.tailBytes ?? 8192)
    const outTail = new Tail(spec.tailBytes ?? 8192)
    const sink = (chunk: Uint8Array) =>
      Effect.sync(() => {
        tail.push(chunk)
        if (logFd !== undefined) NodeFs.writeSync(logFd, chunk)
      })
    const outSink = (chunk: Uint8Array) => Effect.zipRight(Effect.sync(() => outTail.push(chunk)), sink(chunk))
    const drain = yield* Effect.fork(
      Effect.all([Stream.runForEach(proc.stdout, outSink), Stream.runForEach(proc.stderr, sink)], {
        concurrency: 2,
        discard: true
      }).pipe(Effect.ignore)
    )

    const exit = proc.exitCode.pipe(
      Effect.map((code): { code: number | null; signal: string | null } => ({ code, signal: null })),
      Effect.catchAll((e) => Effect.succeed({ code: null, signal: signalOf(e.message) }))
    )
    const waited = spec.timeoutMs === undefined
      ? Effect.map(exit, Option.some)
      : Effect.timeoutOption(exit, Duration.millis(spec.timeoutMs))
    const outcome = yield* waited
    // Whether the command finished or timed out, nothing of its group may survive.
    yield* killProcessGroup(pgid, spec.graceMs, hardKill)
    const final = Option.isSome(outcome) ? outcome.value : yield* exit
    // Pipes close once the group is gone; bound the wait in case a pipe was passed on.
    yield* Fiber.join(drain).pipe(Effect.timeoutOption(Duration.seconds(1)))
    yield* Fiber.interrupt(drain)
    const ended = yield* Clock.currentTimeMillis
    const result: SuperviseResult = {
      pid: pgid,
      exitCode: Option.isSome(outcome) ? final.code : null,
      signal: final.signal,
      timedOut: Option.isNone(outcome),
      durationMs: ended - started,
      outputTail: tail.text(),
      stdoutTail: outTail.text(),
      logFile: spec.logFile
    }
    return result
  }))
})

/** Runs a program (no shell) and returns its exit code, stdout and stderr; both pipes drained. */
export const capture = Effect.fn("Supervisor.capture")(function*(
  program: string,
  args: ReadonlyArray<string>,
  cwd: string,
  env?: Readonly<Record<string, string>>
) {
  const executor = yield* CommandExecutor.CommandExecutor
  return yield* Effect.scoped(Effect.gen(function*() {
    const command = Command.make(program, ...args).pipe(Command.workingDirectory(cwd), Command.env(env ?? {}))
    const proc = yield* executor.start(command).pipe(
      Effect.mapError((e) =>
        new SupervisorError({ reason: "SpawnFailed", command: [program, ...args].join(" "), message: e.message })
      )
    )
    const collect = (s: Stream.Stream<Uint8Array, unknown>) =>
      Stream.runFold(s, [] as Array<Uint8Array>, (acc, c) => {
        acc.push(c)
        return acc
      }).pipe(Effect.map((cs) => Buffer.concat(cs).toString("utf8")), Effect.orElseSucceed(() => ""))
    const [stdout, stderr, exitCode] = yield* Effect.all([
      collect(proc.stdout),
      collect(proc.stderr),
      proc.exitCode.pipe(Effect.orElseSucceed(() => -1))
    ], { concurrency: 3 })
    return { exitCode: Number(exitCode), stdout, stderr }
  }))
})
