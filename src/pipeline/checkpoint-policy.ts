/**
 * The `checkpoint:` settings, resolved. Spelled as ELSPETH spells them
 * (`enabled`, `frequency`, `checkpoint_interval`, `aggregation_boundaries`); the older
 * `every_n_rows` is an alias of `checkpoint_interval`.
 *
 * A checkpoint is a durability point: the sinks' queued rows are written and fsynced,
 * then their audit records, every other record since the previous checkpoint and the
 * checkpoint itself are committed in one transaction. So the cadence of checkpoints is
 * the cadence at which rows become durable.
 */
import { Either } from "effect"
import type { PipelineSettings } from "./settings.js"
import { SettingsError } from "./settings.js"

export type CheckpointFrequency = "every_row" | "every_n" | "aggregation_only"

export interface CheckpointPolicy {
  /** Checkpoints are written (and the run can be resumed). */
  readonly enabled: boolean
  readonly frequency: CheckpointFrequency
  /** Rows bound for sinks between durability points (1 for `every_row`). */
  readonly interval: number
  /** Also checkpoint right after an aggregation batch was flushed. */
  readonly aggregationBoundaries: boolean
}

/** Rows between durability points when nothing says otherwise. */
export const DEFAULT_CHECKPOINT_INTERVAL = 2_000

export const checkpointPolicyOf = (
  file: string,
  settings: Pick<PipelineSettings, "checkpoint">
): Either.Either<CheckpointPolicy, SettingsError> => {
  const c = settings.checkpoint ?? {}
  const fail = (key: string, message: string) => Either.left(new SettingsError({ file, key: `checkpoint.${key}`, message }))
  if (c.every_n_rows !== undefined && c.checkpoint_interval !== undefined && c.every_n_rows !== c.checkpoint_interval) {
    return fail(
      "every_n_rows",
      `${c.every_n_rows} disagrees with checkpoint.checkpoint_interval (${c.checkpoint_interval}); every_n_rows is the older spelling of checkpoint_interval — keep one`
    )
  }
  const interval = c.checkpoint_interval ?? c.every_n_rows
  const frequency: CheckpointFrequency = c.frequency ?? "every_n"
  if (frequency !== "every_n" && c.every_n_rows !== undefined) {
    return fail("every_n_rows", `sets an every_n interval, but checkpoint.frequency is '${frequency}'`)
  }
  if (frequency === "every_n" && c.frequency === "every_n" && interval === undefined) {
    return fail("checkpoint_interval", "required when checkpoint.frequency is 'every_n' (the number of rows between checkpoints)")
  }
  return Either.right({
    enabled: c.enabled ?? true,
    frequency,
    interval: frequency === "every_row" ? 1 : interval ?? DEFAULT_CHECKPOINT_INTERVAL,
    aggregationBoundaries: c.aggregation_boundaries ?? true
  })
}
