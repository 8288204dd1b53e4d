/**
 * The CSV form of an export: one file per record type in a directory (`run.csv`,
 * `node.csv`, …, and `manifest.csv` when signed). An object value becomes dotted
 * columns, so a file's columns are only known once all its records have been seen:
 * flattened rows are spooled to disk meanwhile, and memory stays flat.
 */
import { stringify } from "csv-stringify/sync"
import { Effect, Stream } from "effect"
import { open, rm } from "node:fs/promises"
import * as NodePath from "node:path"
import { StringDecoder } from "node:string_decoder"
import { ExportError, ExportStore, type RunKind } from "../../services/export-store.js"
import { type OutFile, outFile, type WrittenFile, writeError } from "./export-file.js"

/** Columns of the manifest that ends a signed export. */
const MANIFEST_COLUMNS = [
  "record_type",
  "run_id",
  "record_count",
  "chain_hash",
  "hash_algorithm",
  "signature_algorithm",
  "canonical_version",
  "exported_at",
  "signature"
]

/** CSV rows handed to the stringifier at a time. */
const CSV_BATCH = 1_000

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v)

const cellOf = (v: unknown): string | null => {
  if (v === null || v === undefined) return null
  if (typeof v === "string") return v
  if (typeof v === "number" || typeof v === "boolean") return String(v)
  return JSON.stringify(v)
}

/** Columns of one CSV file: base columns in order, each followed by its dotted sub-columns. */
class CsvColumns {
  private readonly children = new Map<string, Array<string>>()
  private readonly known = new Set<string>()
  constructor(private readonly base: Array<string>) {
    for (const b of base) this.known.add(b)
  }

  add(base: string, key: string): void {
    if (this.known.has(key)) return
    this.known.add(key)
    if (!this.children.has(base) && !this.base.includes(base)) this.base.push(base)
    const list = this.children.get(base)
    if (list === undefined) this.children.set(base, [key])
    else list.push(key)
  }

  header(): Array<string> {
    const out: Array<string> = []
    for (const b of this.base) {
      out.push(b)
      for (const c of this.children.get(b) ?? []) out.push(c)
    }
    return out
  }
}

/**
 * Flattens a record: an object value becomes dotted columns (`source_data_json.id`),
 * recursively; arrays and empty objects stay as JSON text in one cell. Two paths that
 * flatten to the same column are an error, never an overwrite.
 */
export const flattenRecord = (
  record: Readonly<Record<string, unknown>>,
  onColumn: (base: string, key: string) => void = () => undefined
): Record<string, string | null> => {
  const out: Record<string, string | null> = Object.create(null)
  const set = (base: string, key: string, value: unknown) => {
    if (Object.prototype.hasOwnProperty.call(out, key)) {
      throw new ExportError({
        reason: "Write",
        message: `cannot flatten ${String(record.record_type)} record seq ${String(record.seq)} to CSV: two values map to the column '${key}'`
      })
    }
    out[key] = cellOf(value)
    onColumn(base, key)
  }
  const walk = (base: string, prefix: string, value: Record<string, unknown>) => {
    for (const k of Object.keys(value)) {
      const v = value[k]
      const key = `${prefix}.${k}`
      if (isPlainObject(v) && Object.keys(v).length > 0) walk(base, key, v)
      else set(base, key, v)
    }
  }
  for (const k of Object.keys(record)) {
    const v = record[k]
    if (isPlainObject(v) && Object.keys(v).length > 0) {
      onColumn(k, k)
      walk(k, k, v)
    } else set(k, k, v)
  }
  return out
}

const raw = (e: unknown): unknown => e

/**
 * Calls `onLine` for every `\n`-separated line of the file at `path`, read a megabyte at
 * a time; `afterBlock` runs after the lines of each block. Fails with what was thrown.
 */
const forEachLine = <E>(
  path: string,
  onLine: (line: string) => void,
  afterBlock: Effect.Effect<void, E>
): Effect.Effect<void, unknown> =>
  Effect.acquireUseRelease(
    Effect.tryPromise({ try: () => open(path, "r"), catch: raw }),
    (handle) =>
      Effect.gen(function*() {
        const buf = Buffer.alloc(1 << 20)
        const decoder = new StringDecoder("utf8")
        let rest = ""
        for (;;) {
          const { bytesRead } = yield* Effect.tryPromise({ try: () => handle.read(buf, 0, buf.length, null), catch: raw })
          if (bytesRead === 0) break
          const text = rest + decoder.write(buf.subarray(0, bytesRead))
          let start = 0
          yield* Effect.try({
            try: () => {
              for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", start)) {
                onLine(text.slice(start, i))
                start = i + 1
              }
            },
            catch: raw
          })
          rest = text.slice(start)
          yield* afterBlock
        }
        rest += decoder.end()
        if (rest !== "") yield* Effect.try({ try: () => onLine(rest), catch: raw })
      }),
    (handle) => Effect.promise(() => handle.close())
  )

/**
 * Writes `records` (ending with the manifest when `signed`) as one CSV file per record
 * type in `dir`. Every record type of a run of that kind gets a file, with at least its
 * header.
 */
export const writeCsvExport = <E, R>(
  dir: string,
  records: Stream.Stream<{ readonly record_type: string }, E, R>,
  signed: boolean,
  kind: RunKind = "pipeline"
): Effect.Effect<{ readonly files: ReadonlyArray<WrittenFile>; readonly count: number }, E | ExportError, R | ExportStore> =>
  Effect.scoped(Effect.gen(function*() {
    const columnsByType = yield* Effect.flatMap(ExportStore, (store) => store.columns(kind))
    const tail = signed ? ["signature"] : []
    const types: Array<string> = [...columnsByType.keys(), ...(signed ? ["manifest"] : [])]
    const columns = new Map<string, CsvColumns>()
    const spools = new Map<string, OutFile>()
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        for (const spool of spools.values()) await rm(spool.path, { force: true })
      })
    )
    for (const type of types) {
      const base = type === "manifest"
        ? [...MANIFEST_COLUMNS]
        : ["record_type", "seq", ...columnsByType.get(type)!, ...tail]
      columns.set(type, new CsvColumns(base))
      spools.set(type, yield* outFile(NodePath.join(dir, `.${type}.spool`)))
    }
    let count = 0
    yield* Stream.runForEachChunk(records, (chunk) =>
      Effect.gen(function*() {
        yield* Effect.try({
          try: () => {
            for (const record of chunk) {
              const type = record.record_type
              const cols = columns.get(type)
              if (cols === undefined) throw new ExportError({ reason: "Write", message: `unknown record type ${type}` })
              const flat = flattenRecord(record as Record<string, unknown>, (base, key) => cols.add(base, key))
              spools.get(type)!.write(JSON.stringify(flat) + "\n")
              if (type !== "manifest") count++
            }
          },
          catch: (e) => e instanceof ExportError ? e : writeError(dir, "cannot spool the CSV rows of", e)
        })
        for (const spool of spools.values()) {
          yield* Effect.mapError(spool.drainIfFull(), (e) => writeError(dir, "cannot spool the CSV rows of", e.cause))
        }
      }))
    const files: Array<WrittenFile> = []
    for (const type of types) {
      const spool = yield* spools.get(type)!.finish()
      const header = columns.get(type)!.header()
      const csv = yield* outFile(NodePath.join(dir, `${type}.csv`))
      csv.write(stringify([header]))
      let batch: Array<Array<string | null>> = []
      const drain = () => {
        if (batch.length > 0) csv.write(stringify(batch))
        batch = []
      }
      yield* forEachLine(
        spool.path,
        (line) => {
          if (line === "") return
          const flat = JSON.parse(line) as Record<string, string | null>
          batch.push(header.map((h) => Object.prototype.hasOwnProperty.call(flat, h) ? flat[h]! : null))
          if (batch.length >= CSV_BATCH) drain()
        },
        csv.drainIfFull()
      ).pipe(
        Effect.zipRight(Effect.try({ try: drain, catch: raw })),
        Effect.mapError((e) => e instanceof ExportError ? e : writeError(csv.path, "cannot write", e))
      )
      files.push(yield* csv.finish())
    }
    return { files, count }
  }))
