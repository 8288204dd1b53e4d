/**
 * The external calls of a row's node states (`llm`, `http`) for `explain`: every attempt
 * with its status, and the request and reply read back from the payload store, checked
 * against their hashes. A blob that is gone leaves its hash in the trail and
 * `payload purged` in the answer.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { filesystemPayloadStore, type PayloadStore } from "./payload-store.js"
import { dbError } from "./lineage-queries.js"
import type { LineageCall, LineagePayload } from "./lineage-types.js"

interface CallRow {
  readonly call_id: string
  readonly state_id: string
  readonly name: string | null
  readonly call_type: string
  readonly provider: string | null
  readonly model: string | null
  readonly response_model: string | null
  readonly attempt: number | null
  readonly status: string
  readonly http_status: number | null
  readonly error_class: string | null
  readonly error_json: string | null
  readonly latency_ms: number | null
  readonly usage_json: string | null
  readonly verify_json: string | null
  readonly created_at: string
  readonly request_hash: string | null
  readonly response_hash: string | null
}

const parse = (text: string | null): unknown => {
  if (text === null) return null
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** The payload store a run wrote its bodies to: `--payload-dir`, else the run's `payload_store.base_path`, else the default. */
export const payloadStoreOfRun = (settingsJson: string | null, override: string | undefined, fallback: string): string => {
  if (override !== undefined) return override
  const settings = parse(settingsJson) as { payload_store?: { base_path?: unknown } } | null
  const base = settings?.payload_store?.base_path
  return typeof base === "string" && base !== "" ? base : fallback
}

export const readPayload = (store: PayloadStore | undefined, hash: string | null): LineagePayload | null => {
  if (hash === null) return null
  if (store === undefined) return { hash, status: "unavailable", note: "no payload store found" }
  const got = store.get(hash)
  if (typeof got === "string") return { hash, status: "stored", value: parse(got) }
  if (got.reason === "NotFound") return { hash, status: "purged", note: "payload purged" }
  return { hash, status: "unavailable", note: got.message }
}

/** The calls of `stateIds`, attempts in order, with their bodies from the store at `basePath`. */
export const readCalls = (sql: SqlClient.SqlClient, stateIds: ReadonlyArray<string>, basePath: string) =>
  Effect.gen(function*() {
    if (stateIds.length === 0) return []
    const rows = yield* sql<CallRow>`
      SELECT c.call_id, c.state_id, n.name, c.call_type, c.provider, c.model, c.response_model, c.attempt, c.status,
             c.http_status, c.error_class, c.error_json, c.latency_ms, c.usage_json, c.verify_json, c.created_at,
             c.request_hash, c.response_hash
      FROM calls c LEFT JOIN nodes n ON n.run_id = c.run_id AND n.node_id = c.node_id
      WHERE c.state_id IN ${sql.in(stateIds)}
      ORDER BY c.state_id, c.call_index, c.created_at, c.call_id`
    const store = existsSync(basePath) ? filesystemPayloadStore(basePath) : undefined
    return rows.map((r): LineageCall => ({
      call_id: r.call_id,
      state_id: r.state_id,
      node: r.name,
      call_type: r.call_type,
      provider: r.provider,
      model: r.model,
      response_model: r.response_model,
      attempt: r.attempt === null ? null : Number(r.attempt),
      status: r.status,
      http_status: r.http_status === null ? null : Number(r.http_status),
      error_class: r.error_class,
      error: parse(r.error_json),
      latency_ms: r.latency_ms,
      usage: parse(r.usage_json),
      verify: parse(r.verify_json),
      created_at: r.created_at,
      request: readPayload(store, r.request_hash),
      response: readPayload(store, r.response_hash)
    }))
  }).pipe(Effect.mapError(dbError("reading the external calls")))
