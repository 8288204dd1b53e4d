import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import {
  type Action,
  type Event,
  initial,
  isTerminal,
  type LifecycleBounds,
  type State,
  transition
} from "../../src/loop/lifecycle.js"

const boundsArb: fc.Arbitrary<LifecycleBounds> = fc.record({
  maxGateAttempts: fc.integer({ min: 1, max: 4 }),
  sessionEnd: fc.boolean(),
  maxSessionEndValidations: fc.integer({ min: 1, max: 4 }),
  remediate: fc.boolean(),
  reviewer: fc.boolean(),
  maxReviewRounds: fc.integer({ min: 1, max: 3 })
})

const eventArb: fc.Arbitrary<Event> = fc.oneof(
  fc.constant<Event>({ _tag: "Start" }),
  fc.constantFrom<Event>(
    { _tag: "ImplementerDone", resolution: null },
    { _tag: "ImplementerDone", resolution: "no_change" }
  ),
  fc.record({ passed: fc.boolean(), noProgress: fc.boolean() }).map((r): Event => ({ _tag: "GateResult", ...r })),
  fc.constant<Event>({ _tag: "SessionEndSkipped" }),
  fc.boolean().map((passed): Event => ({ _tag: "SessionEndValidated", passed })),
  fc.constant<Event>({ _tag: "FixerDone" }),
  fc.record({
    status: fc.constantFrom("pass", "fail", "timeout", "interrupted"),
    abortRun: fc.boolean(),
    drain: fc.option(fc.constantFrom("sigint", "run_aborted"), { nil: undefined })
  }).map(({ abortRun, drain, status }): Event => ({
    _tag: "SessionEndFinished",
    status: status as "pass",
    abortRun,
    ...(drain === undefined ? {} : { drain })
  })),
  fc.constantFrom("approved", "blocked", "parse_error").map((outcome): Event => ({
    _tag: "ReviewResult",
    outcome: outcome as "approved"
  })),
  fc.constant<Event>({ _tag: "Finalized" }),
  fc.constant<Event>({ _tag: "Aborted", reason: "run_aborted" })
)

const checkBounds = (bounds: LifecycleBounds, state: State) => {
  switch (state._tag) {
    case "Implementing":
    case "Gating":
      assert.isAtMost(state.attempt, bounds.maxGateAttempts)
      assert.isAtMost(state.round, bounds.maxReviewRounds)
      break
    case "SessionEnd":
    case "SessionEndRemediating":
      assert.isAtMost(state.validation, bounds.maxSessionEndValidations)
      if (state._tag === "SessionEndRemediating") {
        assert.isTrue(bounds.remediate)
        assert.isBelow(state.validation, bounds.maxSessionEndValidations)
      }
      break
    case "Reviewing":
      assert.isTrue(bounds.reviewer)
      assert.isAtMost(state.round, bounds.maxReviewRounds)
      break
    default:
      break
  }
}

/** A faithful interpreter: answers each action with one of its possible outcomes. */
const answer = (action: Action, state: State, choice: number): Event => {
  switch (action._tag) {
    case "RunImplementer":
      return { _tag: "ImplementerDone", resolution: choice % 7 === 0 ? "obsolete" : null }
    case "RunGate":
      return { _tag: "GateResult", passed: choice % 3 === 0, noProgress: choice % 5 === 1 }
    case "SkipSessionEnd":
      return { _tag: "SessionEndSkipped" }
    case "RunSessionEndValidation":
      return choice % 11 === 0
        ? { _tag: "SessionEndFinished", status: "timeout" }
        : { _tag: "SessionEndValidated", passed: choice % 2 === 0 }
    case "RunFixer":
      return { _tag: "FixerDone" }
    case "FinishSessionEnd":
      // Now and then the run begins draining while session_end runs.
      return choice % 13 === 0
        ? { _tag: "SessionEndFinished", status: "interrupted", drain: "sigint" }
        : { _tag: "SessionEndFinished", status: action.passed ? "pass" : "fail" }
    case "RunReviewer":
      return { _tag: "ReviewResult", outcome: (["approved", "blocked", "parse_error"] as const)[choice % 3]! }
    case "RunFinalize":
      return { _tag: "Finalized" }
    case "None":
      throw new Error(`no action in non-terminal state ${state._tag}`)
  }
}

describe("lifecycle (pure)", () => {
  it("every driven path ends in a terminal state within its bounds", () => {
    fc.assert(
      fc.property(boundsArb, fc.array(fc.nat(1000), { minLength: 200, maxLength: 200 }), fc.option(fc.nat(60)), (
        bounds,
        choices,
        abortAt
      ) => {
        let step = transition(bounds, initial, { _tag: "Start" })
        let i = 0
        let implementerRuns = 0
        let drained = false
        while (!isTerminal(step.state)) {
          checkBounds(bounds, step.state)
          if (step.action._tag === "RunImplementer") implementerRuns++
          // A draining run reviews at most once more and never implements again.
          if (drained) assert.oneOf(step.action._tag, ["RunReviewer", "RunFinalize"])
          if (step.state._tag === "Reviewing" && step.state.drain !== null) drained = true
          const event: Event = abortAt !== null && i === abortAt
            ? { _tag: "Aborted", reason: "run_aborted" }
            : answer(step.action, step.state, choices[i % choices.length]!)
          step = transition(bounds, step.state, event)
          i++
          assert.isBelow(i, 200, "did not terminate")
        }
        assert.isAtMost(implementerRuns, bounds.maxGateAttempts * bounds.maxReviewRounds)
        if (abortAt !== null && abortAt < i - 1) {
          assert.oneOf(step.state._tag === "Done" ? step.state.status : "", ["interrupted", "skipped", "success", "failed"])
        }
      }),
      { numRuns: 500 }
    )
  })

  it("random event sequences never exceed the bounds, and Done is absorbing", () => {
    fc.assert(
      fc.property(boundsArb, fc.array(eventArb, { maxLength: 80 }), (bounds, events) => {
        let state: State = initial
        for (const event of events) {
          const before = state
          state = transition(bounds, state, event).state
          checkBounds(bounds, state)
          if (before._tag === "Done") assert.deepStrictEqual(state, before)
        }
      }),
      { numRuns: 500 }
    )
  })

  const bounds: LifecycleBounds = {
    maxGateAttempts: 3,
    sessionEnd: true,
    maxSessionEndValidations: 3,
    remediate: true,
    reviewer: true,
    maxReviewRounds: 2
  }

  it("gate failures retry with feedback, then fail with gate_failed; session_end is never entered", () => {
    let step = transition(bounds, initial, { _tag: "Start" })
    const tags: Array<string> = []
    while (step.state._tag !== "Finalizing") {
      tags.push(step.action._tag)
      const event: Event = step.action._tag === "RunImplementer"
        ? { _tag: "ImplementerDone", resolution: null }
        : { _tag: "GateResult", passed: false, noProgress: false }
      step = transition(bounds, step.state, event)
    }
    assert.deepStrictEqual(tags, ["RunImplementer", "RunGate", "RunImplementer", "RunGate", "RunImplementer", "RunGate"])
    assert.deepStrictEqual(step.action, { _tag: "RunFinalize", status: "failed", reason: "gate_failed" })
  })

  it("no progress fails fast", () => {
    let step = transition(bounds, initial, { _tag: "Start" })
    step = transition(bounds, step.state, { _tag: "ImplementerDone", resolution: null })
    step = transition(bounds, step.state, { _tag: "GateResult", passed: false, noProgress: true })
    assert.deepStrictEqual(step.action, { _tag: "RunFinalize", status: "failed", reason: "gate_no_progress" })
  })

  it("remediation states are reachable and bounded by 1 + max_retries validations", () => {
    let step = transition(bounds, initial, { _tag: "Start" })
    step = transition(bounds, step.state, { _tag: "ImplementerDone", resolution: null })
    step = transition(bounds, step.state, { _tag: "GateResult", passed: true, noProgress: false })
    const seen: Array<string> = []
    while (step.action._tag !== "FinishSessionEnd") {
      seen.push(`${step.state._tag}:${"validation" in step.state ? step.state.validation : ""}`)
      step = transition(
        bounds,
        step.state,
        step.action._tag === "RunFixer" ? { _tag: "FixerDone" } : { _tag: "SessionEndValidated", passed: false }
      )
    }
    assert.deepStrictEqual(seen, [
      "SessionEnd:1",
      "SessionEndRemediating:1",
      "SessionEnd:2",
      "SessionEndRemediating:2",
      "SessionEnd:3"
    ])
    assert.deepStrictEqual(step.action, { _tag: "FinishSessionEnd", passed: false, exhausted: true })
    step = transition(bounds, step.state, { _tag: "SessionEndFinished", status: "fail" })
    assert.strictEqual(step.action._tag, "RunReviewer")
  })

  it("a blocking review sends the implementer back; a parse error re-runs the reviewer once", () => {
    let step = transition(bounds, { _tag: "Reviewing", round: 1, parseRetry: false, drain: null }, {
      _tag: "ReviewResult",
      outcome: "parse_error"
    })
    assert.deepStrictEqual(step.action, { _tag: "RunReviewer", round: 1, rerun: true, drain: false })
    step = transition(bounds, step.state, { _tag: "ReviewResult", outcome: "blocked" })
    assert.deepStrictEqual(step.action, { _tag: "RunImplementer", round: 2, attempt: 1, feedback: "review" })
    step = transition(bounds, { _tag: "Reviewing", round: 2, parseRetry: false, drain: null }, {
      _tag: "ReviewResult",
      outcome: "blocked"
    })
    assert.deepStrictEqual(step.action, { _tag: "RunFinalize", status: "failed", reason: "review_blocked" })
    step = transition(bounds, { _tag: "Reviewing", round: 1, parseRetry: true, drain: null }, {
      _tag: "ReviewResult",
      outcome: "parse_error"
    })
    assert.deepStrictEqual(step.action, { _tag: "RunFinalize", status: "failed", reason: "review_parse_error" })
  })

  it("a resolution passes without session_end or review; abort interrupts in-flight and skips pending", () => {
    let step = transition(bounds, initial, { _tag: "Start" })
    step = transition(bounds, step.state, { _tag: "ImplementerDone", resolution: "already_complete" })
    assert.deepStrictEqual(step.action, { _tag: "RunFinalize", status: "success", reason: "resolution:already_complete" })
    assert.deepStrictEqual(
      transition(bounds, initial, { _tag: "Aborted", reason: "run_aborted" }).action,
      { _tag: "RunFinalize", status: "skipped", reason: "run_aborted" }
    )
    assert.deepStrictEqual(
      transition(bounds, { _tag: "Gating", round: 1, attempt: 1 }, { _tag: "Aborted", reason: "run_aborted" }).action,
      { _tag: "RunFinalize", status: "interrupted", reason: "run_aborted" }
    )
  })

  it("R10: a run that begins draining while session_end runs still reviews the issue, then ends it interrupted", () => {
    const inSessionEnd: State = { _tag: "SessionEnd", round: 1, validation: 1 }
    const drained = transition(bounds, inSessionEnd, { _tag: "SessionEndFinished", status: "interrupted", drain: "sigint" })
    assert.deepStrictEqual(drained.action, { _tag: "RunReviewer", round: 1, rerun: false, drain: true })
    for (const outcome of ["approved", "blocked", "parse_error"] as const) {
      assert.deepStrictEqual(
        transition(bounds, drained.state, { _tag: "ReviewResult", outcome }).action,
        { _tag: "RunFinalize", status: "interrupted", reason: "sigint" }
      )
    }
    // The session_end may have completed its last command when the drain began: still reviewed.
    assert.strictEqual(
      transition(bounds, inSessionEnd, { _tag: "SessionEndFinished", status: "pass", drain: "run_aborted" }).action._tag,
      "RunReviewer"
    )
    assert.deepStrictEqual(
      transition({ ...bounds, reviewer: false }, inSessionEnd, { _tag: "SessionEndFinished", status: "interrupted", drain: "sigint" })
        .action,
      { _tag: "RunFinalize", status: "interrupted", reason: "sigint" }
    )
  })

  it("failure_mode abort: a failed or timed-out session_end fails the issue unreviewed, its own reason each", () => {
    const inSessionEnd: State = { _tag: "SessionEnd", round: 1, validation: 1 }
    assert.deepStrictEqual(
      transition(bounds, inSessionEnd, { _tag: "SessionEndFinished", status: "fail", abortRun: true, drain: "run_aborted" }).action,
      { _tag: "RunFinalize", status: "failed", reason: "session_end_failed" }
    )
    assert.deepStrictEqual(
      transition(bounds, inSessionEnd, { _tag: "SessionEndFinished", status: "timeout", abortRun: true }).action,
      { _tag: "RunFinalize", status: "failed", reason: "session_end_timeout" }
    )
  })

  it("an abort seen before the first implementer ran skips the issue; after any work it interrupts it", () => {
    const started = transition(bounds, initial, { _tag: "Start" })
    assert.deepStrictEqual(
      transition(bounds, started.state, { _tag: "Aborted", reason: "run_aborted" }).action,
      { _tag: "RunFinalize", status: "skipped", reason: "run_aborted" }
    )
    for (const state of [
      { _tag: "Implementing", round: 1, attempt: 2 },
      { _tag: "Implementing", round: 2, attempt: 1 },
      { _tag: "Gating", round: 1, attempt: 1 }
    ] as const) {
      assert.deepStrictEqual(
        transition(bounds, state, { _tag: "Aborted", reason: "run_aborted" }).action,
        { _tag: "RunFinalize", status: "interrupted", reason: "run_aborted" }
      )
    }
  })
})
