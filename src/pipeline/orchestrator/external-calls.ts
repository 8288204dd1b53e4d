/**
 * External calls of a run: the `llm` and `http` transforms' requests, made live, answered
 * from a recorded run (`run_mode: replay`) or made live and compared with a recorded run
 * (`run_mode: verify`).
 *
 * Every attempt becomes a `calls` record of the token's node state: provider, model,
 * request and response hash, HTTP status, latency, attempt, error class, usage. The
 * bodies go to the payload store under their SHA-256 (the request as `{method, url,
 * body}` in canonical JSON — never the headers, which carry keys — and the reply as
 * canonical JSON, or its text when it is not JSON), written before the records reach
 * the Landscape.
 *
 * Replay matches a request by its hash among the recorded run's calls and answers it
 * with the recorded attempts; it opens no connection. A request no recorded call made
 * stops the run with an error naming the row.
 */
import { Effect, type Scope } from "effect"
import { canonicalJsonUnsafe, sha256Hex } from "../../core/canonical.js"
import { newId, type RunId } from "../../core/ids.js"
import type { CallRecord } from "../../services/records.js"
import type { BlobStore, RecordedCallRow } from "../../services/call-store.js"
import type { PipelinePlan, TransformStep } from "../build.js"
import {
  type ErrorClass,
  type ExternalAttempt,
  type ExternalClient,
  type ExternalClientOptions,
  makeExternalClient
} from "../plugins/external/client.js"
import { makeRateLimiterRegistry } from "../plugins/external/rate-limit.js"
import type { ExternalCallSpec, Interpretation } from "../plugins/external/spec.js"
import { type Row, TransformResult } from "../plugins/protocol.js"
import type { VerificationSummary } from "./types.js"
import type { ParkedCall } from "./processor.js"
import { PipelineRunError } from "./types.js"

export type RunMode = "live" | "replay" | "verify"

export type { VerificationSummary }

/** One recorded attempt, as the replay index keeps it. */
interface RecordedAttempt {
  readonly call_id: string
  readonly attempt: number
  readonly http_status: number | null
  readonly error_class: string | null
  readonly error_json: string | null
  readonly response_hash: string | null
  readonly response_model: string | null
}

/** The recorded logical call that made a request, with its attempts and the decision it led to. */
interface RecordedCall {
  readonly stateId: string
  readonly attempts: Array<RecordedAttempt>
  readonly stateStatus: string
  readonly stateOutputHash: string | null
  readonly stateErrorJson: string | null
}

export type ReplayIndex = ReadonlyMap<string, RecordedCall>

/** The recorded calls of a run by request hash (the first logical call of each request). */
export const replayIndexOf = (rows: ReadonlyArray<RecordedCallRow>): ReplayIndex => {
  const byState = new Map<string, RecordedCall>()
  const index = new Map<string, RecordedCall>()
  for (const r of rows) {
    if (r.request_hash === null) continue
    let call = byState.get(r.state_id)
    if (call === undefined) {
      call = { stateId: r.state_id, attempts: [], stateStatus: r.state_status, stateOutputHash: r.state_output_hash, stateErrorJson: r.state_error_json }
      byState.set(r.state_id, call)
      if (!index.has(r.request_hash)) index.set(r.request_hash, call)
    }
    call.attempts.push({
      call_id: r.call_id,
      attempt: r.attempt,
      http_status: r.http_status,
      error_class: r.error_class,
      error_json: r.error_json,
      response_hash: r.response_hash,
      response_model: r.response_model
    })
  }
  return index
}

/** What resolving a parked call gives the processor. */
export interface CallOutcome {
  readonly result: TransformResult
  readonly records: ReadonlyArray<CallRecord>
}

export interface ExternalCalls {
  /** Makes (or replays) the call of a parked token. Fails only when the run must stop. */
  readonly resolve: (parked: ParkedCall) => Effect.Effect<CallOutcome, PipelineRunError>
  /** How many parked tokens the driver should collect before resolving them together. */
  readonly window: number
  /** How many calls the driver runs at once (the largest pool; each client's pool bounds its own). */
  readonly concurrency: number
  readonly verification: () => VerificationSummary | undefined
}

export interface ExternalCallsOptions {
  readonly runId: RunId
  readonly mode: RunMode
  readonly replayFrom: string | undefined
  readonly replay: ReplayIndex | undefined
  readonly store: BlobStore
  /** Where a call interrupted mid-flight is recorded (the processor's trail). */
  readonly onInterrupted: (records: ReadonlyArray<CallRecord>) => void
}

const iso = (ms: number) => new Date(ms).toISOString()

const externalSteps = (plan: PipelinePlan): Array<TransformStep & { readonly spec: ExternalCallSpec }> => {
  const out: Array<TransformStep & { readonly spec: ExternalCallSpec }> = []
  for (const step of plan.chain) {
    if (step.kind === "transform" && step.instance.external !== undefined) out.push({ ...step, spec: step.instance.external })
  }
  return out
}

export const hasExternalCalls = (plan: PipelinePlan): boolean => externalSteps(plan).length > 0

/** The pool size of a transform: its `pool_size`, else `concurrency.max_workers`, else 1. */
export const poolSizeOf = (plan: PipelinePlan, spec: ExternalCallSpec): number =>
  spec.poolSize ?? plan.settings.concurrency?.max_workers ?? 1

const rateLimitOf = (plan: PipelinePlan, service: string): ExternalClientOptions["rateLimit"] => {
  const rl = plan.settings.rate_limit
  if (rl === undefined || rl.enabled === false) return undefined
  const s = rl.services?.[service]
  const perMinute = s !== undefined ? s.requests_per_minute : rl.default_requests_per_minute
  const perSecond = s !== undefined ? s.requests_per_second : rl.default_requests_per_second
  return {
    ...(perMinute === undefined ? {} : { requestsPerMinute: perMinute }),
    ...(perSecond === undefined ? {} : { requestsPerSecond: perSecond })
  }
}

export const makeExternalCalls = (
  plan: PipelinePlan,
  options: ExternalCallsOptions
): Effect.Effect<ExternalCalls, never, Scope.Scope> =>
  Effect.gen(function*() {
    const steps = externalSteps(plan)
    const retry = plan.settings.retry
    const clients = new Map<string, ExternalClient>()
    // Replay opens no connection: it has no client at all.
    if (options.mode !== "replay") {
      const registry = yield* makeRateLimiterRegistry
      for (const step of steps) {
        const spec = step.spec
        const rateLimit = rateLimitOf(plan, spec.service)
        const client = yield* makeExternalClient({
          service: spec.service,
          timeoutMs: spec.timeoutMs,
          retry: {
            maxAttempts: retry?.max_attempts ?? 3,
            baseDelayMs: (retry?.initial_delay_seconds ?? 0.1) * 1000,
            maxDelayMs: (retry?.max_delay_seconds ?? 10) * 1000,
            jitter: true
          },
          ...(rateLimit === undefined ? {} : { rateLimit }),
          poolSize: poolSizeOf(plan, spec),
          adaptive: spec.adaptive,
          ...(spec.errorStatuses === undefined ? {} : { errorStatuses: spec.errorStatuses }),
          ...(spec.retryableClasses === undefined ? {} : { retryableClasses: spec.retryableClasses })
        }, registry)
        clients.set(step.nodeId, client)
      }
    }
    const specs = new Map(steps.map((s) => [s.nodeId as string, s.spec]))
    const maxPool = Math.max(1, ...steps.map((s) => poolSizeOf(plan, s.spec)))
    const summary = {
      calls: 0,
      responses_matched: 0,
      responses_differed: 0,
      decisions_matched: 0,
      decisions_differed: 0,
      unmatched: 0
    }

    const fail = (message: string, cause?: unknown) =>
      new PipelineRunError({ runId: options.runId, message, ...(cause === undefined ? {} : { cause }) })

    const store = (hash: string, text: string, what: string) =>
      Effect.flatMap(
        Effect.promise(() => options.store.putAsync(hash, text)),
        (problem) => (problem === undefined ? Effect.void : Effect.fail(fail(`storing the ${what} payload: ${problem.message}`, problem)))
      )

    /** The reply body as stored: canonical JSON when it parsed, else the text. */
    const responseBlob = (a: ExternalAttempt): string | null => {
      if (a.responseJson !== undefined) {
        try {
          return canonicalJsonUnsafe(a.responseJson)
        } catch {
          // Not representable in canonical JSON (a lone surrogate): keep the text as received.
        }
      }
      return a.responseText
    }

    const record = (
      p: ParkedCall,
      spec: ExternalCallSpec,
      a: ExternalAttempt,
      requestHash: string,
      responseHash: string | null,
      extra: { readonly interpretation?: Interpretation; readonly verify?: unknown; readonly errorJson?: string | null }
    ): CallRecord => ({
      _tag: "Call",
      call_id: newId("call"),
      state_id: p.state.state_id,
      operation_id: null,
      call_index: a.attempt - 1,
      call_type: spec.kind,
      status: a.errorClass === null ? "success" : "error",
      request_hash: requestHash,
      response_hash: responseHash,
      error_json: extra.errorJson !== undefined
        ? extra.errorJson
        : a.errorMessage === null
        ? null
        : canonicalJsonUnsafe({ message: a.errorMessage, ...(a.retryAfterMs === null ? {} : { retry_after_ms: a.retryAfterMs }) }),
      latency_ms: a.latencyMs,
      created_at: iso(a.startedAt),
      run_id: options.runId,
      node_id: p.step.nodeId,
      provider: spec.provider,
      model: spec.model,
      response_model: extra.interpretation?.responseModel ?? null,
      http_status: a.status,
      attempt: a.attempt,
      error_class: a.errorClass,
      usage_json: extra.interpretation?.usage === undefined || extra.interpretation.usage === null
        ? null
        : canonicalJsonUnsafe(extra.interpretation.usage),
      verify_json: extra.verify === undefined ? null : canonicalJsonUnsafe(extra.verify)
    })

    const describeRow = (p: ParkedCall) => `row ${p.token.rowIndex} (node '${p.step.name}')`

    /** The recorded attempts of a request, read back from the payload store. */
    const replayed = (p: ParkedCall, recorded: RecordedCall): Effect.Effect<Array<ExternalAttempt>, PipelineRunError> =>
      Effect.suspend(() => {
        const out: Array<ExternalAttempt> = []
        for (const r of recorded.attempts) {
          let text: string | null = null
          if (r.response_hash !== null) {
            const got = options.store.get(r.response_hash)
            if (typeof got !== "string") {
              return Effect.fail(fail(
                `run_mode: replay: the recorded reply for ${describeRow(p)} (call ${r.call_id}) cannot be read: ${
                  got.reason === "NotFound" ? "payload purged" : got.message
                }`,
                got
              ))
            }
            text = got
          }
          let json: unknown = undefined
          if (text !== null) {
            try {
              json = JSON.parse(text)
            } catch {
              json = undefined
            }
          }
          let message: string | null = null
          if (r.error_json !== null) {
            try {
              message = String((JSON.parse(r.error_json) as { message?: unknown }).message ?? r.error_json)
            } catch {
              message = r.error_json
            }
          }
          out.push({
            attempt: r.attempt,
            startedAt: Date.now(),
            latencyMs: 0,
            status: r.http_status,
            errorClass: r.error_class as ErrorClass | null,
            errorMessage: message,
            responseText: text,
            responseJson: json,
            retryAfterMs: null
          })
        }
        return Effect.succeed(out)
      })

    const decisionOf = (result: TransformResult): { readonly status: string; readonly hash: string | null } =>
      result._tag === "Success"
        ? { status: "completed", hash: sha256Hex(canonicalJsonUnsafe(result.row)) }
        : result._tag === "Expand"
        ? { status: "completed", hash: sha256Hex(canonicalJsonUnsafe(result.rows)) }
        : { status: "failed", hash: sha256Hex(canonicalJsonUnsafe(result.reason)) }

    const resolve = (p: ParkedCall): Effect.Effect<CallOutcome, PipelineRunError> =>
      Effect.gen(function*() {
        const spec = specs.get(p.step.nodeId)!
        const row = p.token.row as Row
        const prepared = spec.prepare(row)
        if (prepared._tag === "Error") return { result: TransformResult.error(prepared.reason), records: [] }
        const requestJson = canonicalJsonUnsafe(prepared.recorded)
        const requestHash = sha256Hex(requestJson)
        yield* store(requestHash, requestJson, "request")
        const recorded = options.replay?.get(requestHash)

        if (options.mode === "replay") {
          if (recorded === undefined) {
            return yield* Effect.fail(fail(
              `run_mode: replay: ${describeRow(p)} makes a request that run ${options.replayFrom} never made (request hash ${requestHash}); ` +
                "the input, the template or the options differ from the recorded run"
            ))
          }
          const attempts = yield* replayed(p, recorded)
          const final = attempts[attempts.length - 1]!
          const interpretation = spec.interpret(row, final)
          const records = attempts.map((a, i) =>
            record(p, spec, a, requestHash, recorded.attempts[i]!.response_hash, {
              ...(a === final ? { interpretation } : {}),
              errorJson: recorded.attempts[i]!.error_json,
              verify: { mode: "replay", replay_from: options.replayFrom, recorded_call_id: recorded.attempts[i]!.call_id }
            })
          )
          return { result: interpretation.result, records }
        }

        const client = clients.get(p.step.nodeId)!
        const done: Array<ExternalAttempt> = []
        const startedAt = Date.now()
        const result = yield* client.call(prepared.request, {
          onAttempt: (a) => Effect.sync(() => void done.push(a))
        }).pipe(
          Effect.onInterrupt(() =>
            Effect.sync(() => {
              const records = done.map((a) => record(p, spec, a, requestHash, null, {}))
              records.push(record(p, spec, {
                attempt: done.length + 1,
                startedAt,
                latencyMs: Date.now() - startedAt,
                status: null,
                errorClass: "interrupted",
                errorMessage: "the run was interrupted while the call was in flight",
                responseText: null,
                responseJson: undefined,
                retryAfterMs: null
              }, requestHash, null, {}))
              options.onInterrupted(records)
            })
          )
        )
        const records: Array<CallRecord> = []
        const final = result.final
        const blobs = result.attempts.map(responseBlob)
        // The reply is read as it is stored (canonical JSON), so a replay of it decides alike, byte for byte.
        const finalBlob = blobs[blobs.length - 1] ?? null
        const interpretation = spec.interpret(row, final.responseJson !== undefined && finalBlob !== null ? { ...final, responseJson: JSON.parse(finalBlob) } : final)
        for (let k = 0; k < result.attempts.length; k++) {
          const a = result.attempts[k]!
          const blob = blobs[k] ?? null
          const responseHash = blob === null ? null : sha256Hex(blob)
          if (blob !== null && responseHash !== null) yield* store(responseHash, blob, "response")
          let verify: unknown = undefined
          if (options.mode === "verify" && a === final) {
            summary.calls++
            if (recorded === undefined) {
              summary.unmatched++
              verify = { mode: "verify", replay_from: options.replayFrom, recorded_call_id: null, response_match: null, decision_match: null }
            } else {
              const recordedFinal = recorded.attempts[recorded.attempts.length - 1]!
              const responseMatch = recordedFinal.response_hash === responseHash && recordedFinal.error_class === final.errorClass
              const decision = decisionOf(interpretation.result)
              const recordedHash = recorded.stateStatus === "completed"
                ? recorded.stateOutputHash
                : recorded.stateErrorJson === null
                ? null
                : sha256Hex(recorded.stateErrorJson)
              const decisionMatch = decision.status === recorded.stateStatus && decision.hash === recordedHash
              if (responseMatch) summary.responses_matched++
              else summary.responses_differed++
              if (decisionMatch) summary.decisions_matched++
              else summary.decisions_differed++
              verify = {
                mode: "verify",
                replay_from: options.replayFrom,
                recorded_call_id: recordedFinal.call_id,
                response_match: responseMatch,
                decision_match: decisionMatch
              }
            }
          }
          records.push(record(p, spec, a, requestHash, responseHash, {
            ...(a === final ? { interpretation } : {}),
            ...(verify === undefined ? {} : { verify })
          }))
        }
        return { result: interpretation.result, records }
      })

    return {
      resolve,
      window: Math.max(4, maxPool * 4),
      concurrency: maxPool,
      verification: () => (options.mode === "verify" ? { replay_from: options.replayFrom ?? "", ...summary } : undefined)
    }
  })
