#!/usr/bin/env node
/**
 * The CLI entry. Exit codes: 0 success, 1 the work ran and failed, 2 bad usage or
 * configuration, 130 interrupted by SIGINT. Errors print one line on stderr; a stack
 * trace only with --verbose.
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Cause, Effect, Exit, Fiber, Option } from "effect"
import { CliExit, ExitCodes } from "./cli/exit.js"
import { cli } from "./cli/main.js"
import { installSigintOwner } from "./cli/signals.js"

const argv = process.argv.filter((a) => a !== "--verbose")
const verbose = argv.length !== process.argv.length

let interrupted = false

const describeDefect = (defect: unknown): string =>
  verbose && defect instanceof Error ? (defect.stack ?? defect.message) : defect instanceof Error ? defect.message : String(defect)

const exitCodeOf = (exit: Exit.Exit<unknown, unknown>): number => {
  if (Exit.isSuccess(exit)) return ExitCodes.ok
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (error instanceof CliExit) {
      if (error.message !== undefined && error.message !== "") process.stderr.write(`runledger: ${error.message}\n`)
      return error.code
    }
    // @effect/cli already printed usage problems with the help text.
    if (ValidationError.isValidationError(error)) return ExitCodes.usage
    const message = (error as { message?: unknown }).message
    process.stderr.write(`runledger: ${typeof message === "string" ? message : String(error)}\n`)
    if (verbose) process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
    return ExitCodes.failed
  }
  if (interrupted || Cause.isInterruptedOnly(exit.cause)) return ExitCodes.interrupted
  const defects = Cause.defects(exit.cause)
  for (const d of defects) process.stderr.write(`runledger: internal error: ${describeDefect(d)}\n`)
  if (!verbose) process.stderr.write("runledger: run again with --verbose for the stack trace\n")
  return ExitCodes.failed
}

const program = cli(argv).pipe(Effect.provide(NodeContext.layer))
const fiber = Effect.runFork(program)

installSigintOwner((count) => {
  interrupted = true
  if (count > 1) process.exit(ExitCodes.interrupted)
  Effect.runFork(Fiber.interrupt(fiber))
})

fiber.addObserver((exit) => {
  process.exitCode = exitCodeOf(exit)
  // Let stdout/stderr drain, then leave even if a stray handle is still open.
  setImmediate(() => process.exit(process.exitCode))
})
