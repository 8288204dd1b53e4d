import { Data } from "effect"

/** Exit codes of the CLI contract. */
export const ExitCodes = {
  ok: 0,
  /** The work ran and failed: run failed, verification failed, a loop with no success. */
  failed: 1,
  /** Bad usage or invalid configuration. */
  usage: 2,
  interrupted: 130
} as const

/**
 * How a command ends with a non-zero exit code: the bin prints `message` (one line on
 * stderr, when present) and exits with `code`. Commands map their typed errors onto it.
 */
export class CliExit extends Data.TaggedError("CliExit")<{
  readonly code: number
  readonly message?: string
}> {}
