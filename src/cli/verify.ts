import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import { Effect } from "effect"
import { verifyExport } from "../landscape/verify.js"
import { count, printHuman } from "./common.js"
import { exitOnError } from "./exit.js"
import { useRunHeap } from "./heap.js"

const pathArg = Args.text({ name: "PATH" }).pipe(
  Args.withDescription("A signed JSON export of a pipeline or loop run (JSON array or JSON Lines)")
)

export const verifyCommand = Command.make("verify", { path: pathArg }, ({ path }) =>
  Effect.gen(function*() {
    yield* useRunHeap
    const summary = yield* verifyExport(path)
    yield* printHuman(
      `${path}: verified ${count(summary.record_count, "record")} of ${summary.run_kind === "loop" ? "loop run" : "run"} ${summary.run_id}, exported ${summary.exported_at}, chain ${summary.chain_hash}${
        summary.payloads_checked > 0 ? `, ${summary.payloads_checked} inline payloads checked against their hashes` : ""
      }`
    )
  }).pipe(exitOnError)).pipe(
    Command.withDescription(
      "Verify a signed JSON export of a pipeline or loop run: every record's signature, their order and count, the manifest and its hash chain. " +
        "Exit 0 verified, 1 the export does not verify (names the first bad record and why), 2 bad usage (no file, no key)."
    )
  )
