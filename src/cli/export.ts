import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import { exportRun } from "../pipeline/orchestrator/export.js"
import { count, dbOption, dbUrl, printHuman, printNote, requireLandscape } from "./common.js"
import { exitOnError, usageError } from "./exit.js"
import { useRunHeap } from "./heap.js"
import { landscapeRead } from "./layers.js"

const runOption = Options.text("run").pipe(
  Options.withPseudoName("ID|latest"),
  Options.withDescription("The run to export: a pipeline or loop run id, or 'latest' for the most recently started run")
)

const formatOption = Options.choice("format", ["json", "csv"]).pipe(
  Options.withDescription("json: one file (a JSON array, or JSON Lines when --out ends in .jsonl); csv: a directory of one CSV file per record type"),
  Options.withDefault("json" as const)
)

const outOption = Options.text("out").pipe(
  Options.withPseudoName("PATH"),
  Options.withDescription("Where to write: the JSON file, or the CSV directory")
)

const signOption = Options.boolean("sign").pipe(
  Options.withDescription("Sign every record (HMAC-SHA256) and end with a signed manifest; key from RUNLEDGER_SIGNING_KEY (or ELSPETH_SIGNING_KEY)")
)

const includeLogsOption = Options.boolean("include-logs").pipe(
  Options.withDescription(
    "Loop runs: inline each command's whole log file (log_file_text); without it a command record carries the log's SHA-256 and size only"
  )
)

const includePayloadsOption = Options.boolean("include-payloads").pipe(
  Options.withDescription(
    "Pipeline runs, JSON format: inline each external call's request and reply body (request_payload, response_payload) from the payload store; without it a call carries their hashes only"
  )
)

const payloadDirOption = Options.text("payload-dir").pipe(
  Options.withPseudoName("DIR"),
  Options.withDescription("With --include-payloads: the payload store's folder (default: the run's payload_store.base_path)"),
  Options.optional
)

export const exportCommand = Command.make(
  "export",
  {
    db: dbOption,
    run: runOption,
    format: formatOption,
    out: outOption,
    sign: signOption,
    includeLogs: includeLogsOption,
    includePayloads: includePayloadsOption,
    payloadDir: payloadDirOption
  },
  ({ db, format, includeLogs, includePayloads, out, payloadDir, run, sign }) =>
    Effect.gen(function*() {
      const url = dbUrl(db)
      if (includePayloads && format !== "json") {
        return yield* usageError("--include-payloads: inlines bodies in a JSON export; use --format json")
      }
      yield* requireLandscape(url, ` (--db ${url})`)
      yield* useRunHeap
      const summary = yield* exportRun({
        run,
        format,
        out,
        sign,
        includeLogs,
        includePayloads,
        ...Option.match(payloadDir, { onNone: () => ({}), onSome: (dir) => ({ payloadDir: dir }) })
      }).pipe(Effect.provide(landscapeRead(url)))
      const what = summary.run_kind === "loop" ? "loop run" : "run"
      if (summary.run_status === "running") {
        yield* printNote(`warning: ${what} ${summary.run_id} is still marked running; the export is a snapshot of its trail so far`)
      }
      yield* printHuman(
        `exported ${what} ${summary.run_id} (${summary.run_status}): ${count(summary.record_count, "record")}${summary.signed ? ", signed" : ""} → ${summary.out}`
      )
    }).pipe(exitOnError)
).pipe(
  Command.withDescription(
    "Export the audit trail of one run (a pipeline or an issue loop, any finished run) as JSON or CSV, optionally signed. Read-only on the Landscape. " +
      "Exit 0 exported, 1 the export failed, 2 bad usage (unknown run, no signing key)."
  )
)
