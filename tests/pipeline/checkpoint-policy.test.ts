import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { checkpointPolicyOf, DEFAULT_CHECKPOINT_INTERVAL } from "../../src/pipeline/checkpoint-policy.js"

const policy = (checkpoint: Record<string, unknown> | undefined) =>
  checkpointPolicyOf("s.yaml", checkpoint === undefined ? {} : { checkpoint } as never)

describe("checkpoint settings", () => {
  it("defaults: enabled, every_n at the default interval, aggregation boundaries on", () => {
    expect(policy(undefined)).toEqual(Either.right({ enabled: true, frequency: "every_n", interval: DEFAULT_CHECKPOINT_INTERVAL, aggregationBoundaries: true }))
  })

  it("reads ELSPETH's spelling and the every_n_rows alias", () => {
    expect(policy({ enabled: true, frequency: "every_n", checkpoint_interval: 5, aggregation_boundaries: false })).toEqual(
      Either.right({ enabled: true, frequency: "every_n", interval: 5, aggregationBoundaries: false })
    )
    expect(policy({ every_n_rows: 7 })).toEqual(Either.right({ enabled: true, frequency: "every_n", interval: 7, aggregationBoundaries: true }))
    expect(policy({ frequency: "every_row" })).toMatchObject(Either.right({ frequency: "every_row", interval: 1 }))
    expect(policy({ enabled: false })).toMatchObject(Either.right({ enabled: false }))
  })

  it("errors name the key and say why", () => {
    const text = (c: Record<string, unknown>) => {
      const r = policy(c)
      return Either.isLeft(r) ? r.left.text : "no error"
    }
    expect(text({ frequency: "every_n" })).toBe(
      "s.yaml: checkpoint.checkpoint_interval: required when checkpoint.frequency is 'every_n' (the number of rows between checkpoints)"
    )
    expect(text({ every_n_rows: 5, checkpoint_interval: 6 })).toContain("checkpoint.every_n_rows: 5 disagrees with checkpoint.checkpoint_interval (6)")
    expect(text({ frequency: "aggregation_only", every_n_rows: 5 })).toContain("frequency is 'aggregation_only'")
  })
})
