/**
 * The Landscape change journal (`landscape.dump_to_jsonl`): an append-only JSONL file
 * with one self-contained line per committed row change of the Landscape,
 *
 *   {"committed_at":"2026-…Z","table":"token_outcomes","op":"insert","record":{…}}
 *
 * where `record` is the whole row after the change (before it, for a delete), column
 * by column as stored. It is a redundant copy for emergencies and for `tail -f`, not
 * the audit record: the Landscape stays the source of truth.
 *
 * How: temporary triggers (they live in the connection, not in the file, so the schema
 * is untouched) queue each changed row in a temporary table inside the writing
 * transaction; a rolled-back transaction takes its queue entries with it. After each
 * commit the queue is appended to the file in one write, then emptied.
 *
 * A failed write: with `failOnError` the commit that could not be journalled fails
 * (its writes are in the Landscape, so the run fails and says why) and the journal
 * stops; otherwise one warning, and the lines of that commit are missing.
 */
import { SqlError } from "@effect/sql/SqlError"
import { Data } from "effect"
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from "node:fs"
import * as NodePath from "node:path"
import { type CompactTable, compactTableOf, INTERNAL_KEY_COLUMNS } from "./compact.js"
import type { PayloadStore } from "./payload-store.js"
import type { CipherDatabase, CommitListener } from "./sqlite-client.js"

/**
 * The cause of the SqlError of a commit that went through but could not be journalled
 * (with `failOnError`): its writes are in the Landscape.
 */
export class JournalWriteError extends Data.TaggedError("JournalWriteError")<{
  readonly path: string
  readonly message: string
}> {}

/** Whether `error` is a commit that went through but could not be journalled. */
export const committedButNotJournalled = (error: SqlError): boolean => error.cause instanceof JournalWriteError

export interface JournalOptions {
  /** The journal file (absolute, or relative to the working directory). */
  readonly path: string
  /** A failed write fails the commit (and so the run) instead of a warning. */
  readonly failOnError: boolean
  /** Inline each source row's stored payload (`payload`) in its `rows` line. */
  readonly payloads?: PayloadStore | undefined
  /** Where the one warning goes. */
  readonly warn: (message: string) => void
}

export { defaultJournalPath } from "../core/journal-path.js"

const QUEUE = "temp.runledger_journal_queue"
/** Tables of the Landscape that are not its records. */
const SKIPPED = new Set(["effect_sql_migrations"])

const quoteId = (name: string) => `"${name.replace(/"/g, "\"\"")}"`
const quoteText = (text: string) => `'${text.replace(/'/g, "''")}'`

/** `json_object('a', NEW."a", …)`; a BLOB (none is written today) as its hex text. */
const rowObject = (alias: "NEW" | "OLD", columns: ReadonlyArray<string>) =>
  `json_object(${
    columns.map((c) => {
      const ref = `${alias}.${quoteId(c)}`
      return `${quoteText(c)}, CASE WHEN typeof(${ref}) = 'blob' THEN hex(${ref}) ELSE ${ref} END`
    }).join(", ")
  })`

/**
 * A compact table's row as its public record: each key resolved to the id it stands
 * for, column for column as the public view shows it.
 */
const publicObject = (alias: "NEW" | "OLD", table: CompactTable) =>
  `json_object(${table.columns.map((c) => `${quoteText(c.name)}, ${c.sql(alias)}`).join(", ")})`

/** Creates the queue and the triggers on every Landscape table. */
const installTriggers = (db: CipherDatabase) => {
  db.exec(`CREATE TEMP TABLE IF NOT EXISTS runledger_journal_queue (
    seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, op TEXT NOT NULL, record TEXT NOT NULL)`)
  const tables = db.prepare(
    `SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
  ).all() as ReadonlyArray<{ name: string }>
  for (const { name } of tables) {
    if (SKIPPED.has(name)) continue
    // A compact table is journalled as the public table it shows as; the integer keys
    // of runs, nodes and edges are left out (and setting one is no change to journal).
    const compact = compactTableOf(name)
    const internalKey = INTERNAL_KEY_COLUMNS.get(name)
    const columns = (db.prepare(`PRAGMA main.table_info(${quoteId(name)})`).all() as ReadonlyArray<{ name: string }>)
      .map((c) => c.name)
      .filter((c) => c !== internalKey)
    const label = compact?.view ?? name
    for (const [op, event, alias] of [["insert", "INSERT", "NEW"], ["update", "UPDATE", "NEW"], ["delete", "DELETE", "OLD"]] as const) {
      const on = event === "UPDATE" && internalKey !== undefined ? `UPDATE OF ${columns.map(quoteId).join(", ")}` : event
      const record = compact !== undefined ? publicObject(alias, compact) : rowObject(alias, columns)
      db.exec(`CREATE TEMP TRIGGER IF NOT EXISTS ${quoteId(`runledger_journal_${name}_${op}`)}
        AFTER ${on} ON main.${quoteId(name)} BEGIN
          INSERT INTO ${QUEUE} (tbl, op, record) VALUES (${quoteText(label)}, '${op}', ${record});
        END`)
    }
  }
}

const errorText = (e: unknown) => {
  const err = e as { code?: string; message?: string }
  return err.code !== undefined && err.message !== undefined ? err.message : String(e)
}

export interface Journal {
  readonly path: string
  /** The listener the client runs after each commit. */
  readonly afterCommit: CommitListener
  /** Closes the file (after an fsync). */
  readonly close: () => void
}

/**
 * Opens the journal for appending and starts queueing changes on `db` (whose tables
 * exist: call it after the migrations). The file's folder is created. Throws when the
 * file cannot be opened.
 */
export const openJournal = (db: CipherDatabase, options: JournalOptions): Journal => {
  const path = NodePath.resolve(options.path)
  mkdirSync(NodePath.dirname(path), { recursive: true })
  const fd = openSync(path, "a")
  try {
    installTriggers(db)
  } catch (e) {
    closeSync(fd)
    throw e
  }
  const select = db.prepare(`SELECT seq, tbl, op, record FROM ${QUEUE} ORDER BY seq`)
  const clear = db.prepare(`DELETE FROM ${QUEUE} WHERE seq <= ?`)
  let stopped = false
  let warned = false
  let open = true

  const payloadFields = (record: string): string => {
    const store = options.payloads
    if (store === undefined) return ""
    let hash: unknown
    try {
      hash = (JSON.parse(record) as { source_data_hash?: unknown }).source_data_hash
    } catch {
      hash = undefined
    }
    if (typeof hash !== "string") return `,"payload":null,"payload_error":"the row names no payload hash"`
    const payload = store.get(hash)
    return typeof payload === "string"
      ? `,"payload":${JSON.stringify(payload)}`
      : `,"payload":null,"payload_error":${JSON.stringify(payload.message)}`
  }

  const append = (text: string) => {
    const bytes = Buffer.from(text, "utf8")
    let offset = 0
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset)
  }

  const afterCommit: CommitListener = () => {
    if (!open) return undefined
    const queued = select.all() as ReadonlyArray<{ seq: number; tbl: string; op: string; record: string }>
    if (queued.length === 0) return undefined
    clear.run(queued[queued.length - 1]!.seq)
    if (stopped) return undefined
    const at = new Date().toISOString()
    let text = ""
    for (const q of queued) {
      const payload = q.tbl === "rows" && q.op === "insert" ? payloadFields(q.record) : ""
      text += `{"committed_at":"${at}","table":${JSON.stringify(q.tbl)},"op":"${q.op}","record":${q.record}${payload}}\n`
    }
    try {
      append(text)
      return undefined
    } catch (e) {
      const why = errorText(e)
      if (options.failOnError) {
        stopped = true
        const message = `the Landscape journal ${path} could not be written (${why}); ` +
          `landscape.dump_to_jsonl_fail_on_error is true, so the run fails (the Landscape itself holds every record)`
        return new SqlError({ cause: new JournalWriteError({ path, message }), message })
      }
      if (!warned) {
        warned = true
        options.warn(
          `the Landscape journal ${path} could not be written (${why}); the run goes on and the journal misses ` +
            `the records of this commit and of any later one that fails (the Landscape itself holds every record)`
        )
      }
      return undefined
    }
  }

  return {
    path,
    afterCommit,
    close: () => {
      if (!open) return
      open = false
      try {
        fsyncSync(fd)
      } catch {
        // A journal on a device without fsync (a pipe, /dev/full) is still closed.
      }
      closeSync(fd)
    }
  }
}
