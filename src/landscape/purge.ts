/**
 * `runledger purge`: deletes payload blobs (source rows, call requests and replies) that
 * only runs older than the retention period refer to. The Landscape is not changed: the
 * hashes stay in the trail, and explain/export then say "payload purged". A blob that
 * a running run or a run inside the period refers to is kept; files the Landscape does
 * not name are left alone.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { rmSync, statSync } from "node:fs"
import { filesystemPayloadStore } from "./payload-store.js"
import { dbError } from "./exporter.js"

export interface PurgeOptions {
  readonly payloadDir: string
  readonly retentionDays: number
  /** Now, epoch ms (the Clock's). */
  readonly nowMs: number
  readonly dryRun: boolean
}

export interface PurgeSummary {
  readonly payload_dir: string
  readonly retention_days: number
  /** Runs end before this instant for their payloads to expire. */
  readonly cutoff: string
  /** Blobs that expired and were there (deleted unless dry run). */
  readonly expired: number
  readonly bytes: number
  /** Expired blobs already gone. */
  readonly already_gone: number
  /** Blobs kept because a recent or running run refers to them. */
  readonly kept: number
  readonly dry_run: boolean
  readonly errors: ReadonlyArray<string>
}

export const purgePayloads = (options: PurgeOptions) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const cutoff = new Date(options.nowMs - options.retentionDays * 86_400_000).toISOString()
    // Each hash with the latest end of the runs that name it; a run still running never expires.
    const rows = yield* sql.unsafe<{ hash: string; last: string }>(
      `WITH refs (hash, run_id) AS (
         SELECT source_data_hash, run_id FROM rows
         UNION ALL SELECT request_hash, run_id FROM calls WHERE request_hash IS NOT NULL AND run_id IS NOT NULL
         UNION ALL SELECT response_hash, run_id FROM calls WHERE response_hash IS NOT NULL AND run_id IS NOT NULL
       )
       SELECT refs.hash AS hash,
              MAX(CASE WHEN r.status = 'running' THEN '9999' ELSE COALESCE(r.completed_at, r.started_at) END) AS last
       FROM refs JOIN runs r ON r.run_id = refs.run_id
       GROUP BY refs.hash`
    ).pipe(Effect.mapError(dbError("reading the payload hashes of the Landscape")))
    const store = filesystemPayloadStore(options.payloadDir)
    let expired = 0
    let bytes = 0
    let gone = 0
    let kept = 0
    const errors: Array<string> = []
    for (const { hash, last } of rows) {
      if (!/^[0-9a-f]{64}$/.test(hash)) continue
      if (last >= cutoff) {
        kept++
        continue
      }
      const path = store.pathOf(hash)
      let size: number
      try {
        size = statSync(path).size
      } catch {
        gone++
        continue
      }
      expired++
      bytes += size
      if (!options.dryRun) {
        try {
          rmSync(path)
        } catch (e) {
          errors.push(`${path}: ${String((e as { code?: unknown }).code ?? e)}`)
        }
      }
    }
    const summary: PurgeSummary = {
      payload_dir: store.basePath,
      retention_days: options.retentionDays,
      cutoff,
      expired,
      bytes,
      already_gone: gone,
      kept,
      dry_run: options.dryRun,
      errors
    }
    return summary
  })
