#!/usr/bin/env node
/**
 * The CLI entry and the single SIGINT owner. Exit codes (0 success, 1 the work ran and
 * failed, 2 bad usage or configuration, 130 interrupted by SIGINT) and the one error
 * line on stderr come from cli/exit.ts; a stack trace only with --verbose.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect, Fiber } from "effect"
import { exitCodeOf, ExitCodes } from "./cli/exit.js"
import { cli } from "./cli/main.js"
import { installSigintOwner } from "./cli/signals.js"

const argv = process.argv.filter((a) => a !== "--verbose")
const verbose = argv.length !== process.argv.length
// The CLI is one bundled file: stack traces name the source files only through its source map.
if (verbose) process.setSourceMapsEnabled(true)

let interrupted = false

const program = cli(argv).pipe(Effect.provide(NodeContext.layer))
const fiber = Effect.runFork(program)

installSigintOwner((count) => {
  interrupted = true
  if (count > 1) process.exit(ExitCodes.interrupted)
  Effect.runFork(Fiber.interrupt(fiber))
})

fiber.addObserver((exit) => {
  process.exitCode = exitCodeOf(exit, { verbose, interrupted })
  // Let stdout/stderr drain, then leave even if a stray handle is still open.
  setImmediate(() => process.exit(process.exitCode))
})
