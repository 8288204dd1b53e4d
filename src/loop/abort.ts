import { Context, Deferred, Effect, Layer, Option, Ref } from "effect"

/**
 * The run's single cancellation signal. A first request drains the run (no new
 * issues, running commands finish, in-flight issues end `interrupted`, run_end is
 * skipped); a hard kill additionally kills every running process group at once.
 * Tests and library callers trigger it directly; in the CLI, the process's single
 * SIGINT owner (cli/signals.ts) routes Ctrl-C to it while `runledger loop` runs.
 */
export interface RunAbortService {
  /** Drain the run. The first reason wins (`run_aborted`, `sigint`). */
  readonly request: (reason: string) => Effect.Effect<void>
  /** The drain reason; `killed` once a hard kill was requested, whatever came first. */
  readonly reason: Effect.Effect<Option.Option<string>>
  /** Completes when the first request arrives. */
  readonly awaitRequest: Effect.Effect<string>
  /** Kill now; it also drains the run (reason `killed`) if nothing had asked for it. */
  readonly requestHardKill: Effect.Effect<void>
  readonly hardKill: Effect.Effect<boolean>
  readonly awaitHardKill: Effect.Effect<void>
}

export class RunAbort extends Context.Tag("runledger/RunAbort")<RunAbort, RunAbortService>() {}

export const makeRunAbort: Effect.Effect<RunAbortService> = Effect.gen(function*() {
  const reason = yield* Ref.make(Option.none<string>())
  const requested = yield* Deferred.make<string>()
  const killed = yield* Deferred.make<void>()
  const request = (r: string) =>
    Ref.update(reason, (current) => (Option.isSome(current) ? current : Option.some(r))).pipe(
      Effect.zipRight(Deferred.succeed(requested, r)),
      Effect.asVoid
    )
  return {
    request,
    // After a hard kill every check reads `killed`, so an issue that ends on its own
    // (its command killed) and one interrupted by the kill tell the same story.
    reason: Effect.flatMap(
      Deferred.isDone(killed),
      (isKilled) => (isKilled ? Effect.succeed(Option.some("killed")) : Ref.get(reason))
    ),
    awaitRequest: Deferred.await(requested),
    requestHardKill: Effect.zipRight(request("killed"), Effect.asVoid(Deferred.succeed(killed, undefined))),
    hardKill: Deferred.isDone(killed),
    awaitHardKill: Deferred.await(killed)
  }
})

export const RunAbortLive: Layer.Layer<RunAbort> = Layer.effect(RunAbort, makeRunAbort)
