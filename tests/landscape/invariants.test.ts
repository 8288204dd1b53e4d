/**
 * The invariant check every pipeline test ends with (tests/support/invariants.ts) must
 * be able to fail: each broken trail below is refused, naming what is wrong.
 */
import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Cause, Effect, Exit } from "effect"
import type { NodeId, RunId } from "../../src/core/ids.js"
import { Recorder } from "../../src/services/recorder.js"
import { assertLandscapeInvariants, InvariantViolation } from "../support/invariants.js"
import { MemoryLandscape } from "../support/landscape.js"
import * as Trail from "../support/trail.js"

const SRC = "source_1" as NodeId
const SINK = "sink_1" as NodeId

interface Shape {
  /** Leave the row's token without an outcome. */
  readonly noOutcome?: boolean
  /** Record the COMPLETED outcome without its sink. */
  readonly noSinkName?: boolean
  /** Leave out the sink's artifact. */
  readonly noArtifact?: boolean
  /** A second row that never got a token. */
  readonly tokenlessRow?: boolean
  /** The RunResult stored at the end. */
  readonly result?: Record<string, number>
}

/** A finished run of one row from a source to a sink, broken as `shape` says. */
const runOf = (shape: Shape = {}) =>
  Effect.gen(function*() {
    const rec = yield* Recorder
    const runId = yield* rec.beginRun({ settings: {} })
    yield* Trail.registerNode({ runId, nodeId: SRC, pluginName: "csv", nodeType: "source", name: "source", config: {}, sequence: 0 })
    yield* Trail.registerNode({ runId, nodeId: SINK, pluginName: "csv", nodeType: "sink", name: "out", config: {}, sequence: 1 })
    const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 0, data: { id: 1 } })
    const tokenId = yield* Trail.createToken({ runId, rowId })
    const stateId = yield* Trail.beginNodeState({ runId, tokenId, nodeId: SINK, stepIndex: 1, input: { id: 1 } })
    yield* Trail.completeNodeState({ stateId, status: "completed", durationMs: 1 })
    if (shape.noOutcome !== true) {
      yield* Trail.recordOutcome(shape.noSinkName === true ? { runId, tokenId, outcome: "COMPLETED" } : { runId, tokenId, outcome: "COMPLETED", sinkName: "out" })
    }
    if (shape.tokenlessRow === true) yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: 1, data: { id: 2 } })
    if (shape.noArtifact !== true) {
      yield* rec.recordArtifact({ runId, sinkNodeId: SINK, sinkName: "out", artifactType: "file", pathOrUri: "out.csv", contentHash: "h", sizeBytes: 1 })
    }
    const rows = shape.tokenlessRow === true ? 2 : 1
    yield* rec.completeRun(runId, { status: "completed", result: shape.result ?? { rows_processed: rows, rows_succeeded: shape.noOutcome === true ? 0 : 1 } })
    return runId
  })

/** The violation `assertLandscapeInvariants` reports for the run. */
const violationOf = (runId: RunId) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(assertLandscapeInvariants(runId))
    if (Exit.isSuccess(exit)) return assert.fail("the invariants held for a broken trail")
    const error = Cause.squash(exit.cause)
    assert.instanceOf(error, InvariantViolation)
    return (error as InvariantViolation).message
  })

describe("assertLandscapeInvariants", () => {
  it.scoped("holds for a well-formed trail", () =>
    Effect.gen(function*() {
      const runId = yield* runOf()
      yield* assertLandscapeInvariants(runId)
    }).pipe(Effect.provide(MemoryLandscape())))

  const broken: ReadonlyArray<readonly [string, Shape, RegExp]> = [
    ["a token without a terminal outcome", { noOutcome: true }, /tokens without a terminal outcome/],
    ["a COMPLETED outcome without a sink", { noSinkName: true }, /COMPLETED\/ROUTED outcomes without a sink/],
    ["a sink with outcomes but no artifact", { noArtifact: true }, /sinks with outcomes but no artifact/],
    ["a row without a root token", { tokenlessRow: true }, /rows without a root token/],
    ["a RunResult that disagrees with the outcomes", { result: { rows_processed: 1, rows_succeeded: 2 } }, /RunResult\.rows_succeeded = 2 but the trail has 1 COMPLETED/],
    ["a RunResult that disagrees with the rows", { result: { rows_processed: 3 } }, /RunResult\.rows_processed 3 differs from 1 rows/]
  ]
  for (const [name, shape, message] of broken) {
    it.scoped(`refuses ${name}`, () =>
      Effect.gen(function*() {
        const runId = yield* runOf(shape)
        assert.match(yield* violationOf(runId), message)
      }).pipe(Effect.provide(MemoryLandscape())))
  }

  it.scoped("refuses a node state left open after the run ended, and a run that does not exist", () =>
    Effect.gen(function*() {
      const runId = yield* runOf()
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE ls_node_states SET status = 'open', completed_at = NULL, duration_ms = NULL
                 WHERE run_key = (SELECT run_key FROM runs WHERE run_id = ${runId})`
      assert.match(yield* violationOf(runId), /node states left open after the run ended/)
      assert.match(yield* violationOf("run_missing" as RunId), /the run does not exist/)
    }).pipe(Effect.provide(MemoryLandscape())))
})
