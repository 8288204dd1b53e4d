/**
 * `runledger serve`: the read-only web audit explorer. The command is declared here;
 * its code (the HTTP server, the pages) is loaded only when the command runs, so that
 * the other commands start without it.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect, Option } from "effect"
import { dbOption, dbUrl } from "./common.js"
import { CliExit, ExitCodes, exitOnError } from "./exit.js"
import { useRunHeap } from "./heap.js"

const hostOption = Options.text("host").pipe(
  Options.withDescription(
    "Address to listen on. Default 127.0.0.1 (this machine only); any non-loopback address needs --token. Example: --host 0.0.0.0 --token s3cret"
  ),
  Options.withDefault("127.0.0.1")
)

const portOption = Options.integer("port").pipe(
  Options.withDescription("TCP port; 0 picks a free one (the URL printed on stdout says which). Example: --port 8080"),
  Options.withDefault(8080)
)

const tokenOption = Options.text("token").pipe(
  Options.withDescription(
    "Require this token on every request (Authorization: Bearer TOKEN, or ?token=TOKEN once, kept in a cookie). " +
      "Default: the RUNLEDGER_SERVE_TOKEN environment variable; required with a non-loopback --host"
  ),
  Options.optional
)

export const serveCommand = Command.make(
  "serve",
  { db: dbOption, host: hostOption, port: portOption, token: tokenOption },
  ({ db, host, port, token }) =>
    Effect.gen(function*() {
      const { serve } = yield* Effect.promise(() => import("../serve/server.js"))
      yield* useRunHeap
      return yield* serve({ url: dbUrl(db), host, port, token: Option.getOrUndefined(token) }).pipe(
        Effect.catchTag("ServeError", (e) =>
          Effect.fail(new CliExit({ code: e.reason === "Usage" ? ExitCodes.usage : ExitCodes.failed, message: e.message })))
      )
    }).pipe(exitOnError)
).pipe(
  Command.withDescription(
    "Serve a read-only web explorer of a Landscape: runs, each run's graph, rows and their lineage, loop runs, signed " +
      "exports; HTML pages that work without JavaScript and a JSON API under /api/. Prints the URL on stdout; Ctrl-C stops. " +
      "Example: runledger serve --db examples/demo/runs/demo.db --port 8080. Exit 2 when the Landscape does not exist."
  )
)
