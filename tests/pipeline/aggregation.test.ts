/**
 * Aggregations under the TestClock: a queue-fed source the test controls, the run in a
 * forked fiber, time moved by hand. Every test ends with the Landscape invariants.
 */
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Clock, Duration, Effect, Exit, Option, TestClock } from "effect"
import fc from "fast-check"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import type { PipelineRunError, RunResult } from "../../src/pipeline/orchestrator/types.js"
import type { Row, TransformPlugin } from "../../src/pipeline/plugins/protocol.js"
import { TransformResult } from "../../src/pipeline/plugins/protocol.js"
import { OBSERVED_SCHEMA } from "../../src/pipeline/plugins/schema.js"
import { assertLandscapeInvariants } from "../support/invariants.js"
import {
  at,
  finish,
  jsonSinkYaml,
  makeQueueSource,
  nowMs,
  QUIET,
  readJsonSink,
  type StartedRun,
  startRun,
  TestLandscape,
  trail
} from "../support/queue-source.js"

const dir = mkdtempSync(join(tmpdir(), "rl-aggregation-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
const outPath = () => join(dir, `out-${files++}.json`)

interface BatchView {
  readonly batch_id: string
  readonly node: string
  readonly trigger_type: string | null
  readonly status: string
  readonly created_at: string
  readonly completed_at: string | null
  /** `id` of the source row of each member, in member order. */
  readonly ids: ReadonlyArray<unknown>
  readonly members: ReadonlyArray<string>
  readonly outputs: ReadonlyArray<string>
}

/** Batches of the run in creation order, with their members' source ids and outputs. */
const batchesOf = (runId: string) =>
  trail((sql) =>
    Effect.gen(function*() {
      const batches = yield* sql<Omit<BatchView, "ids" | "members" | "outputs">>`
        SELECT b.batch_id, n.name AS node, b.trigger_type, b.status, b.created_at, b.completed_at
        FROM batches b JOIN nodes n ON n.node_id = b.aggregation_node_id AND n.run_id = b.run_id
        WHERE b.run_id = ${runId} ORDER BY b.created_at, b.rowid`
      const out: Array<BatchView> = []
      for (const b of batches) {
        const members = yield* sql<{ token_id: string; json: string }>`
          SELECT m.token_id, r.source_data_json AS json FROM batch_members m
          JOIN tokens t ON t.token_id = m.token_id JOIN rows r ON r.row_id = t.row_id
          WHERE m.batch_id = ${b.batch_id} ORDER BY m.ordinal`
        const outputs = yield* sql<{ token_id: string }>`
          SELECT token_id FROM batch_outputs WHERE batch_id = ${b.batch_id} ORDER BY ordinal`
        out.push({
          ...b,
          ids: members.map((m) => (JSON.parse(m.json) as Row).id),
          members: members.map((m) => m.token_id),
          outputs: outputs.map((o) => o.token_id)
        })
      }
      return out
    })
  )

interface OutcomeView {
  readonly outcome: string
  readonly is_terminal: number
  readonly sink_name: string | null
  readonly batch_id: string | null
  readonly expand_group_id: string | null
  readonly recorded_at: string
}

const outcomesOf = (tokenId: string) =>
  trail((sql) =>
    sql<OutcomeView>`SELECT outcome, is_terminal, sink_name, batch_id, expand_group_id, recorded_at
      FROM token_outcomes WHERE token_id = ${tokenId} ORDER BY is_terminal, outcome_id`
  )

const tokenOfRow = (runId: string, id: number) =>
  trail((sql) =>
    sql<{ token_id: string }>`SELECT t.token_id FROM tokens t JOIN rows r ON r.row_id = t.row_id
      WHERE r.run_id = ${runId} AND json_extract(r.source_data_json, '$.id') = ${id}
      AND NOT EXISTS (SELECT 1 FROM token_parents p WHERE p.token_id = t.token_id)`
  ).pipe(Effect.map((rows) => rows[0]!.token_id))

/** The run of the test (each test has a Landscape of its own). */
const runIdOf = (_run: StartedRun) =>
  trail((sql) => sql<{ run_id: string }>`SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1`).pipe(
    Effect.map((r) => r[0]!.run_id)
  )

/** Ends the source, expects a completed run, checks the invariants. */
const completed = (run: StartedRun) =>
  Effect.gen(function*() {
    const exit = yield* finish(run)
    if (Exit.isFailure(exit)) return assert.fail(`the run failed: ${String(exit.cause)}`)
    assert.strictEqual(exit.value.status, "completed")
    yield* assertLandscapeInvariants(exit.value.run_id)
    return exit.value
  })

/** Expects the run to have failed with a recorded result; checks the invariants. */
const failedRun = (exit: Exit.Exit<RunResult, unknown>) =>
  Effect.gen(function*() {
    if (Exit.isSuccess(exit)) return assert.fail("the run should have failed")
    const error = Option.getOrThrow(Cause.failureOption(exit.cause)) as PipelineRunError
    assert.strictEqual(error._tag, "PipelineRunError")
    assert.strictEqual(error.result?.status, "failed")
    yield* assertLandscapeInvariants(error.runId)
    return error
  })

const statsYaml = (out: string, trigger: string, extra = "") => `
source: {plugin: test_queue}
aggregations:
  - name: stats
    plugin: batch_stats
    trigger: ${trigger}
${extra}    options: {schema: {mode: observed}, value_field: v}
sinks:
${jsonSinkYaml("out", out)}default_sink: out
`

const withLandscape = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, TestLandscape())

// ---------------------------------------------------------------------------

describe("timeout trigger on the clock", () => {
  it.effect("a batch flushes at exactly its timeout while the source is idle, not 1 ms earlier", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(statsYaml(out, "{timeout_seconds: 5}"), source)
      yield* source.offer({ id: 1, v: 10 })
      yield* run.settle
      const runId = yield* runIdOf(run)

      yield* run.advance(4_999)
      let batches = yield* batchesOf(runId)
      assert.strictEqual(batches.length, 1)
      assert.strictEqual(batches[0]!.status, "draft")
      assert.strictEqual(batches[0]!.trigger_type, null)
      assert.deepStrictEqual(batches[0]!.ids, [1])

      yield* run.advance(1)
      batches = yield* batchesOf(runId)
      assert.strictEqual(batches[0]!.status, "completed")
      assert.strictEqual(batches[0]!.trigger_type, "timeout")
      assert.strictEqual(batches[0]!.created_at, at(0))
      assert.strictEqual(batches[0]!.completed_at, at(5_000))
      const consumed = yield* outcomesOf(batches[0]!.members[0]!)
      assert.deepStrictEqual(consumed.map((o) => [o.outcome, o.recorded_at]), [["CONSUMED_IN_BATCH", at(5_000)]])
      assert.strictEqual(run.fiber.unsafePoll(), null, "the run is still waiting for rows")

      // The next row, well after the flush, starts a batch of its own with its own deadline.
      yield* run.advance(1_000)
      yield* source.offer({ id: 2, v: 5 })
      yield* run.advance(4_999)
      batches = yield* batchesOf(runId)
      assert.deepStrictEqual(batches.map((b) => [b.ids, b.status]), [[[1], "completed"], [[2], "draft"]])
      assert.strictEqual(batches[1]!.created_at, at(6_000))
      yield* run.advance(1)
      batches = yield* batchesOf(runId)
      assert.deepStrictEqual(batches.map((b) => [b.trigger_type, b.completed_at]), [["timeout", at(5_000)], ["timeout", at(11_000)]])

      const result = yield* completed(run)
      assert.strictEqual(result.rows_processed, 2)
      assert.strictEqual(result.rows_succeeded, 2)
      assert.deepStrictEqual(readJsonSink(out).map((r) => [r.count, r.sum]), [[1, 10], [1, 5]])
    })))

  it.effect("a row arriving at the deadline joins a new batch, never the timed-out one", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(statsYaml(out, "{timeout_seconds: 2, count: 10}"), source)
      yield* source.offer({ id: 1, v: 1 })
      yield* run.advance(1_000)
      yield* source.offer({ id: 2, v: 2 })
      yield* run.advance(1_000) // t = 2000: the deadline of the batch of rows 1 and 2
      yield* source.offer({ id: 3, v: 3 })
      yield* run.settle
      const runId = yield* runIdOf(run)
      const batches = yield* batchesOf(runId)
      assert.deepStrictEqual(batches.map((b) => [b.ids, b.trigger_type, b.created_at]), [
        [[1, 2], "timeout", at(0)],
        [[3], null, at(2_000)]
      ])
      yield* completed(run)
      assert.deepStrictEqual(readJsonSink(out).map((r) => r.sum), [3, 3])
    })))

  it.effect("a busy source cannot starve a timeout: the next row flushes the due batch first", () =>
    withLandscape(Effect.gen(function*() {
      // Row 2 keeps the engine busy (a retried transform, 10 s) past row 1's deadline at
      // 5 s; row 3 then arrives in the same chunk: the due batch flushes before row 3 joins.
      const out = outPath()
      const errors = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
transforms:
  - plugin: test_flaky
    options: {on_error: errors}
aggregations:
  - name: stats
    plugin: batch_stats
    trigger: {timeout_seconds: 5}
    options: {schema: {mode: observed}, value_field: v}
retry: {max_attempts: 2, initial_delay_seconds: 10}
sinks:
${jsonSinkYaml("out", out)}${jsonSinkYaml("errors", errors)}default_sink: out
`,
        source,
        QUIET,
        [flakyTransform]
      )
      yield* source.offerAll([{ id: 1, v: 1 }, { id: 2, v: 2, flaky: true }, { id: 3, v: 3 }])
      yield* run.settle
      yield* run.advance(10_000)
      const runId = yield* runIdOf(run)
      const batches = yield* batchesOf(runId)
      assert.deepStrictEqual(batches.map((b) => [b.ids, b.trigger_type, b.created_at, b.completed_at]), [
        [[1], "timeout", at(0), at(10_000)],
        [[3], null, at(10_000), null]
      ])
      yield* run.advance(5_000)
      const after = yield* batchesOf(runId)
      assert.deepStrictEqual(after.map((b) => [b.trigger_type, b.completed_at]), [["timeout", at(10_000)], ["timeout", at(15_000)]])
      const result = yield* completed(run)
      assert.deepStrictEqual(result.routed_destinations, { errors: 1 })
      assert.deepStrictEqual(readJsonSink(out).map((r) => r.sum), [1, 3])
    })))

  it.effect("a timer that wakes early (as setTimeout may) still flushes the batch at its deadline", () =>
    withLandscape(Effect.gen(function*() {
      // A Clock whose sleeps of more than 1 ms end 1 ms early, like a live timer may.
      const base = yield* Effect.clock
      const early: Clock.Clock = {
        [Clock.ClockTypeId]: Clock.ClockTypeId,
        unsafeCurrentTimeMillis: () => base.unsafeCurrentTimeMillis(),
        currentTimeMillis: base.currentTimeMillis,
        unsafeCurrentTimeNanos: () => base.unsafeCurrentTimeNanos(),
        currentTimeNanos: base.currentTimeNanos,
        sleep: (d) => {
          const ms = Duration.toMillis(d)
          return base.sleep(Duration.millis(ms > 1 ? ms - 1 : ms))
        }
      }
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* Effect.withClock(startRun(statsYaml(out, "{timeout_seconds: 5}"), source), early)
      yield* source.offer({ id: 1, v: 10 })
      yield* run.settle
      const runId = yield* runIdOf(run)
      yield* run.advance(4_999)
      assert.strictEqual((yield* batchesOf(runId))[0]!.status, "draft")
      yield* run.advance(1)
      yield* run.advance(1_000)
      const batches = yield* batchesOf(runId)
      assert.deepStrictEqual(batches.map((b) => [b.trigger_type, b.completed_at]), [["timeout", at(5_000)]])
      yield* completed(run)
    })))
})

describe("count, timeout and condition together", () => {
  it.effect("a count flush cancels the pending timeout; the stale timer flushes nothing", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(statsYaml(out, "{count: 3, timeout_seconds: 5}"), source)
      for (const id of [1, 2, 3]) {
        yield* source.offer({ id, v: id })
        yield* run.advance(1_000)
      }
      // t = 3000; the first batch's stale deadline is 5000. Row 4 arrives exactly then.
      yield* run.advance(2_000)
      yield* source.offer({ id: 4, v: 4 })
      yield* run.advance(4_999)
      const runId = yield* runIdOf(run)
      let batches = yield* batchesOf(runId)
      assert.deepStrictEqual(batches.map((b) => [b.ids, b.trigger_type, b.created_at, b.completed_at]), [
        [[1, 2, 3], "count", at(0), at(2_000)],
        [[4], null, at(5_000), null]
      ])
      yield* run.advance(1)
      batches = yield* batchesOf(runId)
      assert.deepStrictEqual(batches[1]!.trigger_type, "timeout")
      assert.deepStrictEqual(batches[1]!.completed_at, at(10_000))
      yield* completed(run)
      assert.deepStrictEqual(readJsonSink(out).map((r) => r.count), [3, 1])
    })))

  /**
   * A model of the engine's batching with count + timeout (+ end of source) for rows
   * offered one by one at given instants; timers run before a row at the same instant.
   */
  const model = (count: number, timeoutMs: number, times: ReadonlyArray<number>, endMs: number) => {
    const batches: Array<{ ids: Array<number>; trigger: string; created: number; completed: number }> = []
    let open: { ids: Array<number>; created: number } | undefined
    times.forEach((t, id) => {
      if (open !== undefined && t >= open.created + timeoutMs) {
        batches.push({ ...open, trigger: "timeout", completed: open.created + timeoutMs })
        open = undefined
      }
      if (open === undefined) open = { ids: [], created: t }
      open.ids.push(id)
      if (open.ids.length >= count) {
        batches.push({ ...open, trigger: "count", completed: t })
        open = undefined
      }
    })
    if (open !== undefined) {
      if (endMs >= open.created + timeoutMs) batches.push({ ...open, trigger: "timeout", completed: open.created + timeoutMs })
      else batches.push({ ...open, trigger: "end_of_source", completed: endMs })
    }
    return batches
  }

  it.effect.prop(
    "count and timeout racing: every batch flushes once, by the first trigger, and no row is lost",
    [
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.constantFrom(0, 1, 999, 1_000, 1_001, 2_000, 2_999, 3_000, 3_001, 6_500), { minLength: 0, maxLength: 12 }),
      fc.constantFrom(0, 1_000, 3_000, 4_000)
    ],
    ([count, gaps, tail]) =>
      withLandscape(Effect.gen(function*() {
        const timeoutMs = 3_000
        const out = outPath()
        const source = yield* makeQueueSource
        const run = yield* startRun(statsYaml(out, `{count: ${count}, timeout_seconds: 3}`), source)
        const times: Array<number> = []
        for (const [id, gap] of gaps.entries()) {
          // No I/O mid-run (QUIET): adjust alone waits for the previous row to be processed.
          yield* TestClock.adjust(gap)
          times.push(yield* nowMs)
          yield* source.offer({ id, v: 1 })
          if (id === 0) yield* run.settle // the run's start-up opens sink folders (real I/O)
        }
        yield* TestClock.adjust(tail)
        const endMs = yield* nowMs
        const result = yield* completed(run)
        const batches = yield* batchesOf(result.run_id)
        const expected = model(count, timeoutMs, times, endMs)
        assert.deepStrictEqual(
          batches.map((b) => ({ ids: b.ids, trigger: b.trigger_type, created: b.created_at, completed: b.completed_at })),
          expected.map((b) => ({ ids: b.ids, trigger: b.trigger, created: at(b.created), completed: at(b.completed) }))
        )
        assert.strictEqual(result.rows_succeeded, expected.length)
        assert.deepStrictEqual(readJsonSink(out).map((r) => r.count), expected.map((b) => b.ids.length))
      })),
    { fastCheck: { numRuns: 30 } }
  )

  it.effect("condition trigger: row['batch_count'] >= 3", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(statsYaml(out, `{condition: "row['batch_count'] >= 3"}`), source)
      for (let id = 1; id <= 7; id++) yield* source.offer({ id, v: id })
      yield* run.settle
      const runId = yield* runIdOf(run)
      const before = yield* batchesOf(runId)
      assert.deepStrictEqual(before.map((b) => [b.ids, b.trigger_type]), [[[1, 2, 3], "condition"], [[4, 5, 6], "condition"], [[7], null]])
      const result = yield* completed(run)
      const batches = yield* batchesOf(result.run_id)
      assert.deepStrictEqual(batches.map((b) => b.trigger_type), ["condition", "condition", "end_of_source"])
      assert.deepStrictEqual(readJsonSink(out).map((r) => r.sum), [6, 15, 7])
    })))

  it.effect("a condition that turns true only because time passed is acted on at the next row, not while idle", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(statsYaml(out, `{condition: "row['batch_age_seconds'] >= 2"}`), source)
      yield* source.offer({ id: 1, v: 1 })
      yield* run.advance(10_000)
      const runId = yield* runIdOf(run)
      assert.strictEqual((yield* batchesOf(runId))[0]!.status, "draft")
      yield* source.offer({ id: 2, v: 2 })
      yield* run.settle
      const batches = yield* batchesOf(runId)
      assert.deepStrictEqual(batches.map((b) => [b.ids, b.trigger_type, b.completed_at]), [[[1, 2], "condition", at(10_000)]])
      yield* completed(run)
    })))
})

describe("output modes", () => {
  it.effect("passthrough: rows are BUFFERED, then continue with their new content as the same tokens", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const other = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
aggregations:
  - name: tag
    plugin: batch_replicate
    trigger: {count: 2}
    output_mode: passthrough
    options: {schema: {mode: observed}}
gates:
  - name: copied
    condition: "row.get('copy_index') == 0"
    routes: {"true": continue, "false": other}
sinks:
${jsonSinkYaml("out", out)}${jsonSinkYaml("other", other)}default_sink: out
`,
        source
      )
      yield* source.offer({ id: 1 })
      yield* run.settle
      const runId = yield* runIdOf(run)
      const first = yield* tokenOfRow(runId, 1)
      assert.deepStrictEqual((yield* outcomesOf(first)).map((o) => [o.outcome, o.is_terminal]), [["BUFFERED", 0]])

      yield* source.offer({ id: 2 })
      const result = yield* completed(run)
      const second = yield* tokenOfRow(runId, 2)
      const [batch] = yield* batchesOf(runId)
      assert.strictEqual(batch!.trigger_type, "count")
      assert.deepStrictEqual(batch!.members, [first, second])
      assert.deepStrictEqual(batch!.outputs, [first, second], "passthrough outputs are the buffered tokens themselves")
      for (const token of [first, second]) {
        assert.deepStrictEqual((yield* outcomesOf(token)).map((o) => [o.outcome, o.sink_name]), [["BUFFERED", null], ["COMPLETED", "out"]])
      }
      const tokens = yield* trail((sql) => sql<{ n: number }>`SELECT COUNT(*) AS n FROM tokens WHERE run_id = ${runId}`)
      assert.strictEqual(tokens[0]!.n, 2)
      assert.deepStrictEqual(readJsonSink(out), [{ id: 1, copy_index: 0 }, { id: 2, copy_index: 0 }])
      assert.deepStrictEqual(readJsonSink(other), [])
      assert.strictEqual(result.rows_buffered, 2)
      assert.strictEqual(result.rows_succeeded, 2)
    })))

  it.effect("transform: inputs CONSUMED_IN_BATCH, outputs linked by token_parents and batch_outputs", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(statsYaml(out, "{count: 2}"), source)
      for (const id of [1, 2, 3, 4, 5]) yield* source.offer({ id, v: id * 10 })
      const result = yield* completed(run)
      const batches = yield* batchesOf(result.run_id)
      assert.deepStrictEqual(batches.map((b) => [b.ids, b.trigger_type]), [[[1, 2], "count"], [[3, 4], "count"], [[5], "end_of_source"]])
      for (const b of batches) {
        assert.strictEqual(b.outputs.length, 1)
        for (const m of b.members) {
          assert.deepStrictEqual((yield* outcomesOf(m)).map((o) => [o.outcome, o.batch_id]), [["CONSUMED_IN_BATCH", b.batch_id]])
        }
        const parents = yield* trail((sql) =>
          sql<{ parent_token_id: string }>`SELECT parent_token_id FROM token_parents WHERE token_id = ${b.outputs[0]!} ORDER BY ordinal`
        )
        assert.deepStrictEqual(parents.map((p) => p.parent_token_id), b.members)
        const sameRow = yield* trail((sql) =>
          sql<{ same: number }>`SELECT (SELECT row_id FROM tokens WHERE token_id = ${b.outputs[0]!}) =
            (SELECT row_id FROM tokens WHERE token_id = ${b.members[0]!}) AS same`
        )
        assert.strictEqual(sameRow[0]!.same, 1, "an output belongs to the row of the batch's first member")
        assert.deepStrictEqual((yield* outcomesOf(b.outputs[0]!)).map((o) => [o.outcome, o.sink_name]), [["COMPLETED", "out"]])
      }
      assert.deepStrictEqual(readJsonSink(out), [
        { count: 2, sum: 30, batch_size: 2, mean: 15 },
        { count: 2, sum: 70, batch_size: 2, mean: 35 },
        { count: 1, sum: 50, batch_size: 1, mean: 50 }
      ])
      assert.strictEqual(result.rows_succeeded, 3)
      assert.strictEqual(result.rows_failed, 0)
      assert.strictEqual(result.rows_buffered, 0)
    })))

  it.effect("batch_replicate deaggregation: inputs EXPANDED, each child in its input's expand group", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
aggregations:
  - name: rep
    plugin: batch_replicate
    trigger: {count: 2}
    options: {schema: {mode: observed}}
sinks:
${jsonSinkYaml("out", out)}default_sink: out
`,
        source
      )
      yield* source.offer({ id: 1, copies: 2 })
      yield* source.offer({ id: 2, copies: 3 })
      const result = yield* completed(run)
      const [batch] = yield* batchesOf(result.run_id)
      assert.strictEqual(batch!.outputs.length, 5)
      const children = yield* trail((sql) =>
        sql<{ token_id: string; parent: string; expand_group_id: string | null; same_row: number }>`
          SELECT t.token_id, p.parent_token_id AS parent, t.expand_group_id,
            t.row_id = (SELECT row_id FROM tokens WHERE token_id = p.parent_token_id) AS same_row
          FROM batch_outputs o JOIN tokens t ON t.token_id = o.token_id
          JOIN token_parents p ON p.token_id = t.token_id
          WHERE o.batch_id = ${batch!.batch_id} ORDER BY o.ordinal`
      )
      assert.deepStrictEqual(children.map((c) => c.token_id), batch!.outputs, "one parent per child")
      assert.deepStrictEqual(children.map((c) => c.parent), [batch!.members[0], batch!.members[0], batch!.members[1], batch!.members[1], batch!.members[1]])
      const groups: Array<string> = []
      for (const m of batch!.members) {
        const outcomes = yield* outcomesOf(m)
        assert.deepStrictEqual(outcomes.map((o) => [o.outcome, o.batch_id]), [["EXPANDED", batch!.batch_id]])
        assert.isString(outcomes[0]!.expand_group_id)
        groups.push(outcomes[0]!.expand_group_id!)
      }
      assert.notStrictEqual(groups[0], groups[1])
      assert.deepStrictEqual(children.map((c) => c.expand_group_id), [groups[0], groups[0], groups[1], groups[1], groups[1]])
      assert.isTrue(children.every((c) => c.same_row === 1))
      assert.deepStrictEqual(readJsonSink(out), [
        { id: 1, copies: 2, copy_index: 0 },
        { id: 1, copies: 2, copy_index: 1 },
        { id: 2, copies: 3, copy_index: 0 },
        { id: 2, copies: 3, copy_index: 1 },
        { id: 2, copies: 3, copy_index: 2 }
      ])
      assert.strictEqual(result.rows_expanded, 2)
      assert.strictEqual(result.rows_succeeded, 5)
    })))

  it.effect("end of source flushes in aggregation order: an earlier aggregation's outputs feed a later one first", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
aggregations:
  - name: rep
    plugin: batch_replicate
    trigger: {count: 100}
    options: {schema: {mode: observed}, include_copy_index: false}
  - name: stats
    plugin: batch_stats
    trigger: {count: 100}
    options: {schema: {mode: observed}, value_field: v}
sinks:
${jsonSinkYaml("out", out)}default_sink: out
`,
        source
      )
      yield* source.offer({ id: 1, v: 1, copies: 2 })
      yield* source.offer({ id: 2, v: 2, copies: 1 })
      yield* source.offer({ id: 3, v: 3, copies: 3 })
      const result = yield* completed(run)
      const batches = yield* batchesOf(result.run_id)
      assert.deepStrictEqual(batches.map((b) => [b.node, b.trigger_type]), [["rep", "end_of_source"], ["stats", "end_of_source"]])
      assert.deepStrictEqual(batches[1]!.members, batches[0]!.outputs)
      assert.deepStrictEqual(readJsonSink(out), [{ count: 6, sum: 13, batch_size: 6, mean: 13 / 6 }])
    })))
})

describe("failing batches", () => {
  it.effect("expected_output_count mismatch fails the run; the batch and its members are failed, invariants hold", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(statsYaml(out, "{count: 2}", "    expected_output_count: 2\n"), source)
      yield* source.offer({ id: 1, v: 1 })
      yield* source.offer({ id: 2, v: 2 })
      yield* run.settle
      const exit = yield* finish(run)
      const error = yield* failedRun(exit)
      assert.include(error.message, "expected_output_count")
      const [batch] = yield* batchesOf(error.runId)
      assert.strictEqual(batch!.status, "failed")
      for (const m of batch!.members) assert.deepStrictEqual((yield* outcomesOf(m)).map((o) => o.outcome), ["FAILED"])
      assert.strictEqual(error.result?.rows_failed, 2)
      assert.strictEqual(error.result?.rows_succeeded, 0)
      assert.deepStrictEqual(readJsonSink(out), [])
    })))

  it.effect("a batch crashing on its timer while the source is idle fails the run at once", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(statsYaml(out, "{timeout_seconds: 5}", "    expected_output_count: 3\n"), source)
      yield* source.offer({ id: 1, v: 1 })
      yield* run.advance(5_000)
      const exit = run.fiber.unsafePoll()
      assert.isNotNull(exit, "the run ended without waiting for the source")
      const error = yield* failedRun(exit!)
      assert.include(error.message, "expected_output_count")
      const [batch] = yield* batchesOf(error.runId)
      assert.deepStrictEqual([batch!.status, batch!.ids], ["failed", [1]])
      yield* source.shutdown
    })))

  it.effect("a crashing batch fails the run; tokens buffered in other aggregations end FAILED", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
aggregations:
  - name: stats
    plugin: batch_stats
    trigger: {count: 2}
    options: {schema: {mode: observed}, value_field: v}
  - name: hold
    plugin: batch_replicate
    trigger: {count: 100}
    output_mode: passthrough
    options: {schema: {mode: observed}}
sinks:
${jsonSinkYaml("out", out)}default_sink: out
`,
        source
      )
      for (const row of [{ id: 1, v: 1 }, { id: 2, v: 2 }, { id: 3, v: 3 }, { id: 4 }]) yield* source.offer(row)
      yield* run.settle
      const error = yield* failedRun(yield* finish(run))
      assert.include(error.message, "stats")
      const batches = yield* batchesOf(error.runId)
      assert.deepStrictEqual(batches.map((b) => [b.node, b.status]), [["stats", "completed"], ["hold", "failed"], ["stats", "failed"]])
      const held = batches[1]!.members[0]!
      assert.deepStrictEqual((yield* outcomesOf(held)).map((o) => o.outcome), ["BUFFERED", "FAILED"])
      assert.strictEqual(error.result?.rows_failed, 3)
      assert.strictEqual(error.result?.rows_buffered, 1)
    })))

  it.effect("a batch crashing in the timeout check before a row fails that row too", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const errors = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
transforms:
  - plugin: test_flaky
    options: {on_error: errors}
aggregations:
  - name: stats
    plugin: batch_stats
    trigger: {timeout_seconds: 5}
    options: {schema: {mode: observed}, value_field: v}
retry: {max_attempts: 2, initial_delay_seconds: 10}
sinks:
${jsonSinkYaml("out", out)}${jsonSinkYaml("errors", errors)}default_sink: out
`,
        source,
        QUIET,
        [flakyTransform]
      )
      // Row 1 has no `v`: its batch crashes when row 3 arrives after the deadline.
      yield* source.offerAll([{ id: 1 }, { id: 2, v: 2, flaky: true }, { id: 3, v: 3 }])
      yield* run.settle
      yield* run.advance(10_000)
      yield* failedRun(yield* finish(run))
    })))
})

interface RefusalView {
  readonly outcome: string
  readonly batch_id: string | null
  readonly error_hash: string | null
  readonly context_json: string | null
  readonly state_status: string
  readonly state_error: string | null
  readonly error_details_json: string | null
  readonly destination: string | null
  readonly row_json: string | null
}

/** The terminal outcome, node state at `node` and transform error of `tokenId`. */
const refusalOf = (tokenId: string, node: string) =>
  trail((sql) =>
    sql<RefusalView>`
      SELECT o.outcome, o.batch_id, o.error_hash, o.context_json, s.status AS state_status, s.error_json AS state_error,
        e.error_details_json, e.destination, e.row_json
      FROM token_outcomes o
      JOIN node_states s ON s.token_id = o.token_id
      JOIN nodes n ON n.node_id = s.node_id AND n.run_id = s.run_id AND n.name = ${node}
      LEFT JOIN transform_errors e ON e.state_id = s.state_id
      WHERE o.token_id = ${tokenId} AND o.is_terminal = 1`
  ).pipe(Effect.map((rows) => rows[0]!))

/**
 * A batch plugin that refuses the rows marked `bad` (per-row errors). `shape`: `each`
 * returns the other rows marked `seen` (one per input, for passthrough), `sum` one row
 * counting them, `bogus` refuses an input the batch does not have.
 */
const refusingBatch: TransformPlugin = {
  kind: "transform",
  name: "test_refusing",
  description: "Refuses rows marked bad.",
  batchAware: true,
  create: (raw) =>
    Effect.succeed({
      _tag: "BatchTransform",
      plugin: "test_refusing",
      onError: undefined,
      inputSchema: OBSERVED_SCHEMA,
      outputSchema: OBSERVED_SCHEMA,
      processBatch: (rows: ReadonlyArray<Row>) => {
        const shape = (raw as { shape: string }).shape
        const rowErrors = rows.flatMap((r, index) => (r.bad === true ? [{ index, reason: { reason: "bad_row", id: r.id } }] : []))
        const kept = rows.filter((r) => r.bad !== true)
        if (shape === "bogus") return { _tag: "Success", rows: kept, rowErrors: [{ index: rows.length, reason: { reason: "x" } }] }
        if (shape === "sum") return { _tag: "Success", rows: [{ n: kept.length }], rowErrors }
        return { _tag: "Success", rows: kept.map((r) => ({ ...r, seen: true })), rowErrors }
      }
    })
}

describe("per-row refusals in a batch", () => {
  it.effect("batch_replicate copies 0: that row ends QUARANTINED with its reason, the rest of the batch goes on", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
aggregations:
  - name: rep
    plugin: batch_replicate
    trigger: {count: 3}
    options: {schema: {mode: observed}, max_copies: 5}
sinks:
${jsonSinkYaml("out", out)}default_sink: out
`,
        source
      )
      yield* source.offerAll([{ id: 1, copies: 2 }, { id: 2, copies: 0 }, { id: 3, copies: 6 }, { id: 4, copies: 1 }])
      const result = yield* completed(run)
      assert.deepStrictEqual(readJsonSink(out), [
        { id: 1, copies: 2, copy_index: 0 },
        { id: 1, copies: 2, copy_index: 1 },
        { id: 4, copies: 1, copy_index: 0 }
      ])
      assert.strictEqual(result.rows_quarantined, 2)
      assert.strictEqual(result.rows_expanded, 2)
      assert.strictEqual(result.rows_succeeded, 3)
      assert.strictEqual(result.rows_failed, 0)
      const batches = yield* batchesOf(result.run_id)
      assert.deepStrictEqual(batches.map((b) => [b.status, b.ids]), [["completed", [1, 2, 3]], ["completed", [4]]])
      const refused = yield* refusalOf(yield* tokenOfRow(result.run_id, 2), "rep")
      assert.strictEqual(refused.outcome, "QUARANTINED")
      assert.strictEqual(refused.batch_id, batches[0]!.batch_id)
      assert.isString(refused.error_hash)
      const reason = { reason: "invalid_copies", field: "copies", value: 0, message: "'copies' must be between 1 and 5 (max_copies), got 0" }
      assert.deepStrictEqual(JSON.parse(refused.context_json!), { reason: "transform_error", node: "rep", destination: "discard", error: reason })
      assert.strictEqual(refused.state_status, "failed")
      assert.deepStrictEqual(JSON.parse(refused.state_error!), reason)
      assert.deepStrictEqual(JSON.parse(refused.error_details_json!), { ...reason, retryable: false, attempt: 1 })
      assert.strictEqual(refused.destination, "discard")
      assert.deepStrictEqual(JSON.parse(refused.row_json!), { id: 2, copies: 0 })
      const over = yield* refusalOf(yield* tokenOfRow(result.run_id, 3), "rep")
      assert.strictEqual(over.outcome, "QUARANTINED")
      assert.strictEqual((JSON.parse(over.error_details_json!) as Row).value, 6)
      // The kept inputs are EXPANDED into their own copies only.
      const kept = yield* outcomesOf(yield* tokenOfRow(result.run_id, 1))
      assert.deepStrictEqual(kept.map((o) => o.outcome), ["EXPANDED"])
    })))

  it.effect("a batch whose rows are all refused completes with no outputs; the run goes on", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
aggregations:
  - name: rep
    plugin: batch_replicate
    trigger: {count: 2}
    options: {schema: {mode: observed}}
sinks:
${jsonSinkYaml("out", out)}default_sink: out
`,
        source
      )
      yield* source.offerAll([{ id: 1, copies: 0 }, { id: 2, copies: 0 }, { id: 3, copies: 1 }])
      const result = yield* completed(run)
      assert.strictEqual(result.rows_quarantined, 2)
      assert.deepStrictEqual(readJsonSink(out), [{ id: 3, copies: 1, copy_index: 0 }])
      const batches = yield* batchesOf(result.run_id)
      assert.deepStrictEqual(batches.map((b) => [b.status, b.outputs.length]), [["completed", 0], ["completed", 1]])
    })))

  it.effect("passthrough: refused rows are QUARANTINED, the others continue as the same tokens", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
aggregations:
  - name: refuse
    plugin: test_refusing
    trigger: {count: 3}
    output_mode: passthrough
    options: {shape: each}
sinks:
${jsonSinkYaml("out", out)}default_sink: out
`,
        source,
        QUIET,
        [refusingBatch]
      )
      yield* source.offerAll([{ id: 1 }, { id: 2, bad: true }, { id: 3 }])
      const result = yield* completed(run)
      assert.deepStrictEqual(readJsonSink(out), [{ id: 1, seen: true }, { id: 3, seen: true }])
      const refused = yield* outcomesOf(yield* tokenOfRow(result.run_id, 2))
      assert.deepStrictEqual(refused.map((o) => o.outcome), ["BUFFERED", "QUARANTINED"])
      const kept = yield* outcomesOf(yield* tokenOfRow(result.run_id, 3))
      assert.deepStrictEqual(kept.map((o) => o.outcome), ["BUFFERED", "COMPLETED"])
    })))

  it.effect("transform mode without origins: refused rows are not consumed nor parents of the outputs", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
aggregations:
  - name: refuse
    plugin: test_refusing
    trigger: {count: 3}
    options: {shape: sum}
sinks:
${jsonSinkYaml("out", out)}default_sink: out
`,
        source,
        QUIET,
        [refusingBatch]
      )
      yield* source.offerAll([{ id: 1, bad: true }, { id: 2 }, { id: 3 }])
      const result = yield* completed(run)
      assert.deepStrictEqual(readJsonSink(out), [{ n: 2 }])
      const [batch] = yield* batchesOf(result.run_id)
      const parents = yield* trail((sql) =>
        sql<{ parent: string }>`SELECT parent_token_id AS parent FROM token_parents WHERE token_id = ${batch!.outputs[0]!} ORDER BY ordinal`
      )
      assert.deepStrictEqual(parents.map((p) => p.parent), batch!.members.slice(1))
      // The output belongs to the first kept input's row, not to the refused one's.
      const [output] = yield* trail((sql) =>
        sql<{ id: number }>`SELECT json_extract(r.source_data_json, '$.id') AS id FROM tokens t JOIN rows r ON r.row_id = t.row_id
          WHERE t.token_id = ${batch!.outputs[0]!}`
      )
      assert.strictEqual(output!.id, 2)
      assert.deepStrictEqual((yield* outcomesOf(batch!.members[0]!)).map((o) => o.outcome), ["QUARANTINED"])
      assert.deepStrictEqual((yield* outcomesOf(batch!.members[1]!)).map((o) => o.outcome), ["CONSUMED_IN_BATCH"])
    })))

  it.effect("a refusal naming no input of the batch fails the run; every member ends FAILED", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      const run = yield* startRun(
        `
source: {plugin: test_queue}
aggregations:
  - name: refuse
    plugin: test_refusing
    trigger: {count: 2}
    options: {shape: bogus}
sinks:
${jsonSinkYaml("out", out)}default_sink: out
`,
        source,
        QUIET,
        [refusingBatch]
      )
      yield* source.offerAll([{ id: 1 }, { id: 2 }])
      yield* run.settle
      const error = yield* failedRun(yield* finish(run))
      assert.include(error.message, "refused input 2, which is not one of the batch's 2 inputs")
      assert.strictEqual(error.result?.rows_failed, 2)
    })))
})

/** A transform that fails retryably on rows with `flaky: true` (every attempt). */
const flakyTransform: TransformPlugin = {
  kind: "transform",
  name: "test_flaky",
  description: "Retryable errors on rows marked flaky.",
  batchAware: false,
  create: (raw) =>
    Effect.succeed({
      _tag: "RowTransform",
      plugin: "test_flaky",
      onError: (raw as { on_error?: string } | undefined)?.on_error,
      inputSchema: OBSERVED_SCHEMA,
      outputSchema: OBSERVED_SCHEMA,
      process: (row: Row) => (row.flaky === true ? TransformResult.error({ reason: "flaky" }, true) : TransformResult.success(row))
    })
}

describe("durability while the source is idle", () => {
  it.effect("outputs of a timer flush become durable (COMPLETED) without waiting for the next row", () =>
    withLandscape(Effect.gen(function*() {
      const out = outPath()
      const source = yield* makeQueueSource
      // Durability points every 1 s of clock time, as by default; no count threshold.
      const run = yield* startRun(statsYaml(out, `{count: 100, timeout_seconds: 5}`), source, {
        durabilityRows: 1e9,
        durabilityIntervalMs: 1_000,
        progressIntervalMs: 1e12
      })
      yield* source.offer({ id: 1, v: 1 })
      yield* source.offer({ id: 2, v: 2 })
      yield* run.advance(5_000)
      // The timer flushed the batch; poll (with real turns for the file I/O) for the outcome.
      const runId = yield* runIdOf(run)
      let completedRows = 0
      for (let i = 0; i < 100 && completedRows === 0; i++) {
        yield* run.settle
        const rows = yield* trail((sql) =>
          sql<{ n: number }>`SELECT COUNT(*) AS n FROM token_outcomes WHERE run_id = ${runId} AND outcome = 'COMPLETED'`
        )
        completedRows = rows[0]!.n
      }
      assert.strictEqual(completedRows, 1, "the batch output is COMPLETED while the source is still idle")
      // Written and fsynced; the json array itself is closed only when the sink completes.
      assert.include(readFileSync(out, "utf8"), `"count": 2`)
      const result = yield* completed(run)
      assert.strictEqual(result.rows_succeeded, 1)
    })))
})
