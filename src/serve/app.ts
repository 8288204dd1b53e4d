/**
 * The explorer's HTTP application: the routes (HTML pages and the JSON API beside
 * them), the export download, and the guard every request goes through — only GET and
 * HEAD (anything else is 405), the token when one is set, and the security headers
 * (a strict Content-Security-Policy: no script at all, styles from the explorer only).
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Effect, Stream } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { createReadStream, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { explain, type LineageError } from "../landscape/lineage.js"
import { exportRun } from "../pipeline/orchestrator/export.js"
import { SIGNING_KEY_ENV, signingKeyFromEnv } from "../services/signing.js"
import { href, type Html, withQuery } from "./html.js"
import {
  ambiguousPage,
  batchesPage as batchesHtml,
  errorPage,
  lineagePage,
  loopPage,
  type PageContext,
  RUN_STATUSES,
  runPage,
  runsPage,
  STYLESHEET
} from "./pages.js"
import {
  batchesPage,
  batchMemberships,
  type GraphCountCache,
  isOutcome,
  listRunsPage,
  loopDetail,
  type RowPageQuery,
  rowsPage,
  runDetail,
  runKindOf,
  type RunListQuery
} from "../landscape/explorer-queries.js"

export interface AppOptions {
  /** The Landscape file, for the header. */
  readonly database: string
  /** Required on every request when set. */
  readonly token: string | undefined
  readonly env: Readonly<Record<string, string | undefined>>
  readonly cache: GraphCountCache
}

export const TOKEN_COOKIE = "runledger_token"

export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

const SECURITY_HEADERS = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store"
}

/** A failure a handler answers with a status and a message (the page or the JSON says it). */
class HttpProblem extends Error {
  constructor(readonly status: number, readonly title: string, message: string) {
    super(message)
  }
}

const notFound = (message: string) => new HttpProblem(404, "Not Found", message)
const badRequest = (message: string) => new HttpProblem(400, "Bad Request", message)

const PAGE_SIZE = 50
const MAX_PAGE_SIZE = 500

const search = (params: Readonly<Record<string, string | ReadonlyArray<string>>>, key: string): string | undefined => {
  const v = params[key]
  const one = typeof v === "string" ? v : v?.[0]
  return one === undefined || one === "" ? undefined : one
}

const nonNegative = (value: string | undefined, key: string, fallback: number) => {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 0) throw badRequest(`?${key}= takes a whole number ≥ 0, not ${JSON.stringify(value)}`)
  return n
}

const parse = <A>(f: () => A) =>
  Effect.try({ try: f, catch: (e) => (e instanceof HttpProblem ? e : badRequest(String(e))) })

const runListQuery = (params: Readonly<Record<string, string | ReadonlyArray<string>>>) =>
  parse((): RunListQuery => {
    const status = search(params, "status")
    if (status !== undefined && !(RUN_STATUSES as ReadonlyArray<string>).includes(status)) {
      throw badRequest(`?status= is one of ${RUN_STATUSES.join(", ")}, not ${JSON.stringify(status)}`)
    }
    const kind = search(params, "kind")
    if (kind !== undefined && kind !== "pipeline" && kind !== "loop") throw badRequest(`?kind= is pipeline or loop, not ${JSON.stringify(kind)}`)
    const limit = Math.min(MAX_PAGE_SIZE, Math.max(1, nonNegative(search(params, "limit"), "limit", PAGE_SIZE)))
    const page = Math.max(1, nonNegative(search(params, "page"), "page", 1))
    return { status, kind: kind as RunListQuery["kind"], limit, offset: (page - 1) * limit }
  })

const rowQuery = (params: Readonly<Record<string, string | ReadonlyArray<string>>>) =>
  parse((): RowPageQuery => {
    const outcome = search(params, "outcome")
    if (outcome !== undefined && !isOutcome(outcome)) throw badRequest(`?outcome= is an outcome such as QUARANTINED, not ${JSON.stringify(outcome)}`)
    const field = search(params, "field")
    const value = search(params, "value")
    return {
      outcome: outcome as RowPageQuery["outcome"],
      sink: search(params, "sink"),
      field: field === undefined ? undefined : { name: field, value: value ?? "" },
      from: nonNegative(search(params, "from"), "from", 0),
      limit: Math.min(MAX_PAGE_SIZE, Math.max(1, nonNegative(search(params, "limit"), "limit", PAGE_SIZE)))
    }
  })

const routeParam = (name: string) =>
  Effect.flatMap(HttpRouter.params, (p) => (p[name] === undefined ? Effect.fail(badRequest(`missing ${name}`)) : Effect.succeed(p[name]!)))

const htmlResponse = (body: Html, status = 200) => HttpServerResponse.text(body.text, { status, contentType: "text/html; charset=utf-8" })
const jsonResponse = (body: unknown, status = 200) =>
  HttpServerResponse.text(JSON.stringify(body, null, 2) + "\n", { status, contentType: "application/json; charset=utf-8" })

const lineageProblem = (e: LineageError): HttpProblem | undefined => {
  switch (e._tag) {
    case "LineageRunNotFound":
    case "LineageRowNotFound":
    case "LineageTokenNotFound":
      return notFound(e.message)
    case "InvalidLineageQuery":
      return badRequest(e.message)
    case "AmbiguousLineage":
      return undefined
  }
}

/** The Host header names a loopback address (or is absent, as from a bare HTTP/1.0 client). */
const loopbackHost = (host: string | undefined): boolean => {
  if (host === undefined || host === "") return true
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d+$/, "")
  return name === "localhost" || name === "::1" || /^127\.\d+\.\d+\.\d+$/.test(name)
}

export const makeApp = (options: AppOptions) => {
  const ctx: PageContext = { database: options.database }

  const requirePipelineRun = (runId: string) =>
    Effect.flatMap(runKindOf(runId), (kind) =>
      kind === "pipeline" ? Effect.void : Effect.fail(notFound(kind === "loop" ? `${runId} is a loop run: see /loops/${runId}` : `no run ${runId} in this Landscape`)))

  const lineageOf = (runId: string, query: { row?: string; token?: string; sink?: string }) =>
    Effect.gen(function*() {
      yield* requirePipelineRun(runId)
      const lineage = yield* explain({ runId, ...query })
      const memberships = yield* batchMemberships(lineage.path)
      return { lineage, memberships }
    })

  const lineageHandler = (asJson: boolean, by: "row" | "token") =>
    Effect.gen(function*() {
      const runId = yield* routeParam("run")
      const key = yield* routeParam(by)
      const params = yield* HttpServerRequest.ParsedSearchParams
      const sink = search(params, "sink")
      const token = by === "token" ? key : search(params, "token")
      const query = { ...(by === "row" ? { row: key } : {}), ...(token === undefined ? {} : { token }), ...(sink === undefined ? {} : { sink }) }
      return yield* lineageOf(runId, query).pipe(
        Effect.map(({ lineage, memberships }) =>
          asJson ? jsonResponse({ ...lineage, batch_memberships: memberships }) : htmlResponse(lineagePage(ctx, lineage, memberships))
        ),
        Effect.catchTags({
          AmbiguousLineage: (e) =>
            Effect.succeed(
              asJson
                ? jsonResponse({ error: e.message, candidates: e.candidates }, 300)
                : htmlResponse(ambiguousPage(ctx, runId, e.rowIndex, e.message, e.candidates), 300)
            ),
          LineageRunNotFound: (e) => Effect.fail(lineageProblem(e)!),
          LineageRowNotFound: (e) => Effect.fail(lineageProblem(e)!),
          LineageTokenNotFound: (e) => Effect.fail(lineageProblem(e)!),
          InvalidLineageQuery: (e) => Effect.fail(lineageProblem(e)!)
        })
      )
    })

  const runsHandler = (asJson: boolean) =>
    Effect.gen(function*() {
      const query = yield* runListQuery(yield* HttpServerRequest.ParsedSearchParams)
      const result = yield* listRunsPage(query, options.cache)
      if (asJson) {
        return jsonResponse({ ...result, page: Math.floor(query.offset / query.limit) + 1, limit: query.limit })
      }
      return htmlResponse(runsPage(ctx, result, query))
    })

  const signingKey = () => signingKeyFromEnv(options.env)

  const runHandler = (asJson: boolean) =>
    Effect.gen(function*() {
      const runId = yield* routeParam("run")
      const kind = yield* runKindOf(runId)
      if (kind === undefined) return yield* Effect.fail(notFound(`no run ${runId} in this Landscape`))
      if (kind === "loop") return HttpServerResponse.redirect(asJson ? href("api", "loops", runId) : href("loops", runId), { status: 303 })
      const detail = (yield* runDetail(runId, options.cache))!
      if (asJson) return jsonResponse(detail)
      const q = yield* rowQuery(yield* HttpServerRequest.ParsedSearchParams)
      const rows = yield* rowsPage(runId, q, detail.outcomes)
      const batches = detail.batch_count === 0 ? [] : yield* batchesPage(runId, 20, 0)
      return htmlResponse(runPage(ctx, detail, rows, q, batches, { signed: signingKey() !== undefined, keyEnv: SIGNING_KEY_ENV }))
    })

  const rowsHandler = Effect.gen(function*() {
    const runId = yield* routeParam("run")
    yield* requirePipelineRun(runId)
    const q = yield* rowQuery(yield* HttpServerRequest.ParsedSearchParams)
    const page = yield* rowsPage(runId, q, options.cache.get(runId)?.outcomes)
    return jsonResponse({
      ...page,
      next_url: page.next === null ? null : withQuery(href("api", "runs", runId, "rows"), { outcome: q.outcome, sink: q.sink, field: q.field?.name, value: q.field?.value, from: page.next, limit: q.limit })
    })
  })

  const batchesHandler = (asJson: boolean) =>
    Effect.gen(function*() {
      const runId = yield* routeParam("run")
      yield* requirePipelineRun(runId)
      const params = yield* HttpServerRequest.ParsedSearchParams
      const pageNo = yield* parse(() => Math.max(1, nonNegative(search(params, "page"), "page", 1)))
      const detail = (yield* runDetail(runId, options.cache))!
      const batches = yield* batchesPage(runId, PAGE_SIZE, (pageNo - 1) * PAGE_SIZE)
      if (asJson) return jsonResponse({ batches, total: detail.batch_count, page: pageNo, limit: PAGE_SIZE })
      return htmlResponse(batchesHtml(ctx, runId, batches, pageNo, detail.batch_count, PAGE_SIZE))
    })

  const loopHandler = (asJson: boolean) =>
    Effect.gen(function*() {
      const runId = yield* routeParam("run")
      const detail = yield* loopDetail(runId)
      if (detail === undefined) return yield* Effect.fail(notFound(`no loop run ${runId} in this Landscape`))
      if (asJson) return jsonResponse({ ...detail, commands: Object.fromEntries([...detail.commands].map(([k, v]) => [k ?? "run_end", v])) })
      return htmlResponse(loopPage(ctx, { ...detail, run: { ...detail.run, counts: { ...detail.run.counts } } }, { signed: signingKey() !== undefined, keyEnv: SIGNING_KEY_ENV }))
    })

  /** The run's export, written to a temporary file by the exporter and streamed; the file is removed after. */
  const exportHandler = Effect.gen(function*() {
    const runId = yield* routeParam("run")
    const kind = yield* runKindOf(runId)
    if (kind === undefined) return yield* Effect.fail(notFound(`no run ${runId} in this Landscape`))
    const params = yield* HttpServerRequest.ParsedSearchParams
    const key = signingKey()
    const unsigned = search(params, "unsigned") !== undefined
    if (!unsigned && key === undefined) {
      return yield* Effect.fail(
        new HttpProblem(409, "Signing key not set", `${SIGNING_KEY_ENV} is not set where the explorer runs, so it cannot sign; ask for ${withQuery(href("runs", runId, "export.json"), { unsigned: 1 })} for the unsigned export`)
      )
    }
    const dir = mkdtempSync(join(tmpdir(), "runledger-export-"))
    const out = join(dir, `${runId}.json`)
    const removeDir = Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    const summary = yield* exportRun({ run: runId, format: "json", out, ...(unsigned ? {} : { sign: true, signingKey: key! }) }).pipe(
      Effect.tapErrorCause(() => removeDir)
    )
    const body = NodeStream.fromReadable(() => createReadStream(out), (e) => new HttpProblem(500, "Export", String(e))).pipe(Stream.ensuring(removeDir))
    const filename = `${runId}${summary.signed ? ".signed" : ""}.json`
    return HttpServerResponse.stream(body, {
      contentType: "application/json",
      headers: {
        "content-disposition": `attachment; filename="${filename}"`,
        "x-runledger-signed": String(summary.signed),
        "x-runledger-records": String(summary.record_count)
      }
    })
  })

  const router = HttpRouter.empty.pipe(
    HttpRouter.all("/", Effect.succeed(HttpServerResponse.redirect("/runs", { status: 303 }))),
    HttpRouter.all("/assets/explorer.css", Effect.succeed(HttpServerResponse.text(STYLESHEET, { contentType: "text/css; charset=utf-8" }))),
    HttpRouter.all("/runs", runsHandler(false)),
    HttpRouter.all("/runs/:run", runHandler(false)),
    HttpRouter.all("/runs/:run/batches", batchesHandler(false)),
    HttpRouter.all("/runs/:run/export.json", exportHandler),
    HttpRouter.all("/runs/:run/rows/:row", lineageHandler(false, "row")),
    HttpRouter.all("/runs/:run/tokens/:token", lineageHandler(false, "token")),
    HttpRouter.all("/loops/:run", loopHandler(false)),
    HttpRouter.all("/api/runs", runsHandler(true)),
    HttpRouter.all("/api/runs/:run", runHandler(true)),
    HttpRouter.all("/api/runs/:run/rows", rowsHandler),
    HttpRouter.all("/api/runs/:run/batches", batchesHandler(true)),
    HttpRouter.all("/api/runs/:run/rows/:row", lineageHandler(true, "row")),
    HttpRouter.all("/api/runs/:run/tokens/:token", lineageHandler(true, "token")),
    HttpRouter.all("/api/loops/:run", loopHandler(true))
  )

  const problemResponse = (isApi: boolean, status: number, title: string, message: string) =>
    isApi ? jsonResponse({ error: message, status }, status) : htmlResponse(errorPage(ctx, status, title, message), status)

  const tokenDigest = options.token === undefined ? undefined : createHash("sha256").update(options.token).digest()
  const tokenMatches = (candidate: string | undefined) =>
    candidate !== undefined && tokenDigest !== undefined && timingSafeEqual(createHash("sha256").update(candidate).digest(), tokenDigest)

  return Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const url = new URL(request.url, "http://explorer.invalid")
    const isApi = url.pathname.startsWith("/api/")
    if (request.method !== "GET" && request.method !== "HEAD") {
      return HttpServerResponse.setHeader(
        problemResponse(isApi, 405, "Method Not Allowed", `the explorer is read-only: ${request.method} is not allowed (GET and HEAD are)`),
        "allow",
        "GET, HEAD"
      )
    }
    // Without a token the explorer trusts only requests addressed to loopback: a page
    // elsewhere that points a name of its own at 127.0.0.1 (DNS rebinding) is refused.
    if (options.token === undefined && !loopbackHost(request.headers["host"])) {
      return problemResponse(isApi, 403, "Forbidden", "this explorer answers requests for localhost, 127.0.0.1 or [::1] only (start it with --token to serve other names)")
    }
    let setCookie = false
    if (options.token !== undefined) {
      const auth = request.headers["authorization"]
      const bearer = auth?.startsWith("Bearer ") === true ? auth.slice("Bearer ".length).trim() : undefined
      const fromQuery = url.searchParams.get("token") ?? undefined
      const cookie = request.cookies[TOKEN_COOKIE]
      if (tokenMatches(fromQuery)) setCookie = true
      else if (!tokenMatches(bearer) && !tokenMatches(cookie === undefined ? undefined : decodeURIComponent(cookie))) {
        return HttpServerResponse.setHeader(
          problemResponse(isApi, 401, "Unauthorized", "this explorer needs its token: Authorization: Bearer TOKEN, or ?token=TOKEN once (a cookie keeps it)"),
          "www-authenticate",
          "Bearer"
        )
      }
    }
    const response = yield* router.pipe(
      Effect.catchAll((e: unknown) => {
        if (e instanceof HttpProblem) return Effect.succeed(problemResponse(isApi, e.status, e.title, e.message))
        const tagged = e as { _tag?: string; message?: string; reason?: string }
        if (tagged._tag === "RouteNotFound") return Effect.succeed(problemResponse(isApi, 404, "Not Found", `no page at ${url.pathname}`))
        if (tagged._tag === "RecorderError" && tagged.reason === "MissingRun") {
          return Effect.succeed(problemResponse(isApi, 404, "Not Found", tagged.message ?? "no such run"))
        }
        return Effect.succeed(problemResponse(isApi, 500, "Internal Error", tagged.message ?? String(e)))
      })
    )
    return setCookie
      ? HttpServerResponse.setHeader(response, "set-cookie", `${TOKEN_COOKIE}=${encodeURIComponent(options.token!)}; Path=/; HttpOnly; SameSite=Strict`)
      : response
  }).pipe(Effect.map(HttpServerResponse.setHeaders(SECURITY_HEADERS)))
}
