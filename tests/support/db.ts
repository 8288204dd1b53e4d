import { Effect, Layer } from "effect"
import { SqliteLandscape } from "../../src/landscape/sqlite.js"
import { assertLandscapeInvariants } from "./invariants.js"

/** Checks the invariants of `runId` in the Landscape file at `path`. */
export const checkInvariantsIn = (path: string, runId: string) =>
  Effect.runPromise(assertLandscapeInvariants(runId).pipe(Effect.provide(SqliteLandscape(path).pipe(Layer.orDie)), Effect.scoped))
