import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Clock, Effect, Option } from "effect"
import { existsSync } from "node:fs"
import { purgePayloads } from "../landscape/purge.js"
import { DEFAULT_PAYLOAD_BASE_PATH } from "../services/call-store.js"
import { dbOption, dbUrl, jsonOption, printHuman, printJson, requireLandscape } from "./common.js"
import { CliExit, exitOnError, usageError } from "./exit.js"
import { landscapeRead } from "./layers.js"

export const purgeCommand = Command.make(
  "purge",
  {
    db: dbOption,
    payloadDir: Options.text("payload-dir").pipe(
      Options.withPseudoName("DIR"),
      Options.withDescription(`The payload store's folder (payload_store.base_path; default ${DEFAULT_PAYLOAD_BASE_PATH})`),
      Options.optional
    ),
    retentionDays: Options.integer("retention-days").pipe(
      Options.withPseudoName("N"),
      Options.withDescription("Delete payloads that only runs which ended more than N days ago refer to")
    ),
    dryRun: Options.boolean("dry-run").pipe(Options.withDescription("Say what would be deleted; delete nothing")),
    yes: Options.boolean("yes").pipe(Options.withDescription("Delete without asking (required unless --dry-run)")),
    json: jsonOption
  },
  ({ db, dryRun, json, payloadDir, retentionDays, yes }) =>
    Effect.gen(function*() {
      if (retentionDays < 0) return yield* usageError(`--retention-days: expected a whole number ≥ 0, got ${retentionDays}`)
      if (!dryRun && !yes) return yield* usageError("purge deletes payload files: give --yes to delete, or --dry-run to see what would go")
      const dir = Option.getOrElse(payloadDir, () => DEFAULT_PAYLOAD_BASE_PATH)
      if (!existsSync(dir)) return yield* usageError(`--payload-dir: no folder ${dir}`)
      const url = dbUrl(db)
      yield* requireLandscape(url, ` (--db ${url})`)
      const nowMs = yield* Clock.currentTimeMillis
      const summary = yield* purgePayloads({ payloadDir: dir, retentionDays, nowMs, dryRun }).pipe(Effect.provide(landscapeRead(url)))
      if (json) yield* printJson(summary)
      else {
        yield* printHuman(
          `${dryRun ? "would purge" : "purged"} ${summary.expired} payload${summary.expired === 1 ? "" : "s"} (${summary.bytes} bytes) of runs ended before ${summary.cutoff} from ${summary.payload_dir}; ` +
            `kept ${summary.kept}, ${summary.already_gone} already gone; their hashes stay in the trail`
        )
      }
      if (summary.errors.length > 0) {
        return yield* new CliExit({ code: 1, message: `could not delete: ${summary.errors.slice(0, 5).join("; ")}` })
      }
    }).pipe(exitOnError)
).pipe(
  Command.withDescription(
    "Delete expired payloads (source rows, external call requests and replies) from the payload store. The Landscape keeps their hashes; " +
      "explain and export then say 'payload purged'. Exit 0 done, 1 some files could not be deleted, 2 bad usage."
  )
)
