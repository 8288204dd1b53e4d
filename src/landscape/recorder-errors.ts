/** The RecorderErrors the SqlRecorder fails with, and how an SqlError becomes one. */
import type { SqlError } from "@effect/sql/SqlError"
import { Either } from "effect"
import { canonicalJson } from "../core/canonical.js"
import { RecorderError } from "../services/recorder.js"

export const invalid = (message: string) => new RecorderError({ reason: "InvalidInput", message })

/** A file that holds something else than a Landscape (of this or an older version). */
export const notLandscape = (filename: string, why: string) =>
  new RecorderError({ reason: "NotALandscape", message: `${filename} is not a runledger Landscape: ${why}` })

export const missingRun = (runId: string) =>
  new RecorderError({ reason: "MissingRun", message: `no run with id ${runId} in this Landscape` })

/** A constraint the database refused is a ConstraintViolation; anything else a Database error. */
export const fromSql = (what: string) => (error: SqlError): RecorderError => {
  const text = String((error.cause as { message?: unknown } | undefined)?.message ?? error.message)
  if (/constraint/i.test(text)) {
    return new RecorderError({ reason: "ConstraintViolation", message: `${what}: ${text}`, cause: error })
  }
  return new RecorderError({ reason: "Database", message: `${what}: ${text}`, cause: error })
}

/** Canonical JSON of `value`, or an InvalidInput error naming the path of the bad value. */
export const jsonOf = (what: string, value: unknown): Either.Either<string, RecorderError> =>
  Either.mapLeft(canonicalJson(value), (e) => invalid(`${what}: ${e.message}`))
