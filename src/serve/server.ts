/**
 * `runledger serve`: the explorer on @effect/platform's HTTP server (Node's http under
 * NodeHttpServer), over a Landscape opened read-only. Binds loopback unless told
 * otherwise; any other address needs a token. Prints the bound URL on stdout once it
 * listens, and serves until interrupted (Ctrl-C).
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Data, Effect, Layer } from "effect"
import { createServer } from "node:http"
import { isIP } from "node:net"
import { LandscapeReadOnly } from "../landscape/read-only.js"
import { resolveSqliteUrl } from "../landscape/sqlite.js"
import { makeApp } from "./app.js"
import { makeGraphCountCache } from "../landscape/explorer-queries.js"

export interface ServeOptions {
  readonly url: string
  readonly host: string
  readonly port: number
  readonly token: string | undefined
  readonly env?: Readonly<Record<string, string | undefined>>
}

/** The explorer was asked to listen where it must not, or could not. */
export class ServeError extends Data.TaggedError("ServeError")<{
  readonly reason: "Usage" | "Listen"
  readonly message: string
}> {}

/** 127.0.0.0/8, ::1 and localhost. */
export const isLoopback = (host: string): boolean => {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, "")
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true
  if (isIP(h) === 4) return h.startsWith("127.")
  if (h.startsWith("::ffff:")) return h.slice("::ffff:".length).startsWith("127.")
  return false
}

export const TOKEN_ENV = "RUNLEDGER_SERVE_TOKEN"

export const serve = (options: ServeOptions) =>
  Effect.gen(function*() {
    const env = options.env ?? process.env
    const token = options.token ?? (env[TOKEN_ENV] === undefined || env[TOKEN_ENV] === "" ? undefined : env[TOKEN_ENV])
    if (!isLoopback(options.host) && token === undefined) {
      return yield* new ServeError({
        reason: "Usage",
        message: `--host ${options.host} is not a loopback address: the explorer would be reachable from other machines; ` +
          `give --token TOKEN (or set ${TOKEN_ENV}) so that every request must carry it`
      })
    }
    if (!Number.isSafeInteger(options.port) || options.port < 0 || options.port > 65535) {
      return yield* new ServeError({ reason: "Usage", message: `--port ${options.port}: a port is a whole number from 0 to 65535 (0 picks a free one)` })
    }
    const database = yield* resolveSqliteUrl(options.url)
    // The header names the Landscape as it was given (--db), not the machine's absolute path.
    const app = makeApp({ database: options.url, token, env, cache: makeGraphCountCache() })
    const landscape = LandscapeReadOnly(options.url, env)
    const http = NodeHttpServer.layer(() => createServer(), { port: options.port, host: options.host }).pipe(
      Layer.mapError((e) => new ServeError({ reason: "Listen", message: `cannot listen on ${options.host}:${options.port}: ${String((e.cause as { message?: unknown } | undefined)?.message ?? e.message)}` }))
    )
    yield* Effect.gen(function*() {
      yield* HttpServer.serveEffect(app)
      const server = yield* HttpServer.HttpServer
      const address = server.address
      const where = address._tag === "TcpAddress"
        ? `http://${address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname}:${address.port}/`
        : `unix:${address.path}`
      process.stdout.write(`runledger explorer: ${where}\n`)
      process.stderr.write(
        `reading ${database} read-only${token === undefined ? "" : "; every request needs the token (Authorization: Bearer, or ?token= once)"}; Ctrl-C stops\n`
      )
      return yield* Effect.never
    }).pipe(Effect.scoped, Effect.provide(http), Effect.provide(landscape))
  })
