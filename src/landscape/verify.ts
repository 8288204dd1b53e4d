/**
 * Verification of a signed JSON export, of a pipeline run or of a loop run alike: every
 * record's signature, the order and completeness of the records (their `seq`), the
 * manifest's signature, its count and its hash chain. Reads the file in chunks (a JSON array or JSON Lines), so memory
 * holds a few numbers per record, not the records.
 */
import { createHash, createHmac } from "node:crypto"
import * as NodeFs from "node:fs"
import { StringDecoder } from "node:string_decoder"
import { Data, Effect } from "effect"
import { CANONICAL_VERSION, canonicalJsonUnsafe } from "../core/canonical.js"
import {
  CHAIN_SEED,
  chainNext,
  HASH_ALGORITHM,
  requireSigningKey,
  SIGNATURE_ALGORITHM,
  type SigningKeyMissing,
  unsigned
} from "../services/signing.js"

export type VerificationFailure =
  | "modified"
  | "missing"
  | "reordered"
  | "extra"
  | "wrong_count"
  | "bad_manifest"
  | "unsigned"
  | "unreadable"

export class ExportVerificationError extends Data.TaggedError("ExportVerificationError")<{
  readonly path: string
  readonly reason: VerificationFailure
  /** 0-based position of the first bad record in the file, when one is to blame. */
  readonly position?: number
  readonly message: string
}> {}

export interface VerificationSummary {
  readonly path: string
  readonly run_id: string
  /** `loop` when the export's run record is a `loop_run`, else `pipeline`. */
  readonly run_kind: "pipeline" | "loop"
  readonly record_count: number
  readonly chain_hash: string
  readonly exported_at: string
  /** Inline call bodies checked against their hashes (exports made with --include-payloads). */
  readonly payloads_checked: number
}

export interface VerifyOptions {
  /** The signing key; by default read from the environment. */
  readonly signingKey?: string
}

class Unreadable extends Error {}

/**
 * Calls `onElement` with the text of each element of a top-level JSON array, or of
 * each non-blank line of a JSON Lines file, in file order, reading 1 MiB at a time.
 */
export const forEachJsonElement = (path: string, onElement: (text: string) => void): void => {
  const fd = NodeFs.openSync(path, "r")
  try {
    const buf = Buffer.alloc(1 << 20)
    const decoder = new StringDecoder("utf8")
    let mode = "start" as "start" | "array" | "lines" | "done"
    // Array mode: nesting depth inside the current element, string state, the element so far.
    let depth = 0
    let inString = false
    let escaped = false
    let inElement = false
    let parts: Array<string> = []
    let line = ""

    const feed = (text: string) => {
      let i = 0
      if (mode === "start") {
        while (i < text.length && (text.charCodeAt(i) <= 32 || text.charCodeAt(i) === 0xfeff)) i++
        if (i === text.length) return
        mode = text[i] === "[" ? "array" : "lines"
        if (mode === "array") i++
      }
      if (mode === "lines") {
        let start = i
        for (let j = text.indexOf("\n", start); j >= 0; j = text.indexOf("\n", start)) {
          const l = line + text.slice(start, j)
          line = ""
          if (l.trim() !== "") onElement(l)
          start = j + 1
        }
        line += text.slice(start)
        return
      }
      let start = inElement ? i : -1
      for (; i < text.length; i++) {
        const c = text.charCodeAt(i)
        if (mode === "done") {
          if (c > 32) throw new Unreadable("text after the end of the JSON array")
          continue
        }
        if (!inElement) {
          if (c <= 32 || c === 44 /* , */) continue
          if (c === 93 /* ] */) {
            mode = "done"
            continue
          }
          inElement = true
          start = i
          depth = 0
        }
        if (inString) {
          if (escaped) escaped = false
          else if (c === 92 /* \ */) escaped = true
          else if (c === 34 /* " */) inString = false
          continue
        }
        if (c === 34) inString = true
        else if (c === 123 || c === 91) depth++
        else if (c === 125 || c === 93) {
          if (depth === 0) {
            // A `]` ending the array right after a scalar element.
            parts.push(text.slice(start, i))
            onElement(parts.join(""))
            parts = []
            inElement = false
            mode = "done"
            continue
          }
          depth--
          if (depth === 0) {
            parts.push(text.slice(start, i + 1))
            onElement(parts.join(""))
            parts = []
            inElement = false
          }
        } else if (c === 44 && depth === 0) {
          parts.push(text.slice(start, i))
          onElement(parts.join(""))
          parts = []
          inElement = false
        }
      }
      if (inElement) parts.push(text.slice(start))
    }

    for (;;) {
      const n = NodeFs.readSync(fd, buf, 0, buf.length, null)
      if (n === 0) break
      feed(decoder.write(buf.subarray(0, n)))
    }
    feed(decoder.end())
    const end = mode as "start" | "array" | "lines" | "done"
    if (end === "lines" && line.trim() !== "") onElement(line)
    if (end === "array" || end === "start") throw new Unreadable(mode === "start" ? "the file is empty" : "the JSON array is not closed (truncated file?)")
  } finally {
    NodeFs.closeSync(fd)
  }
}

const describe = (position: number, seq: number | undefined, type: string | undefined) =>
  `record at position ${position}${seq === undefined ? "" : ` (seq ${seq}${type === undefined ? "" : `, ${type}`})`}`

/** The record types that open an export and name its run. */
const RUN_TYPES: Readonly<Record<string, "pipeline" | "loop">> = { run: "pipeline", loop_run: "loop" }

/**
 * What a record says it is, to find it in the trail: its first `*_id` column other than
 * `run_id` (`command_id 5f0c…`), else its run id. Read from the record as it stands,
 * which may be the tampered one.
 */
const identify = (record: Record<string, unknown>): string => {
  for (const [k, v] of Object.entries(record)) {
    if (k !== "run_id" && k.endsWith("_id") && (typeof v === "string" || typeof v === "number")) return `${k} ${v}`
  }
  return typeof record.run_id === "string" ? `run_id ${record.run_id}` : ""
}

const naming = (record: Record<string, unknown>): string => {
  const id = identify(record)
  return id === "" ? "" : `; the record reads ${id}`
}

/**
 * Verifies the signed JSON export at `path`. Succeeds with a summary; fails with the
 * first bad record and why: modified, missing, reordered, extra, wrong count, bad
 * manifest (or unsigned / unreadable).
 */
export const verifyExport = (
  path: string,
  options: VerifyOptions = {}
): Effect.Effect<VerificationSummary, ExportVerificationError | SigningKeyMissing> =>
  Effect.gen(function*() {
    const key = options.signingKey ?? (yield* requireSigningKey("verify"))
    const fail = (reason: VerificationFailure, message: string, position?: number) =>
      new ExportVerificationError({ path, reason, message, ...(position === undefined ? {} : { position }) })
    return yield* Effect.try({
      try: () => verifyFile(path, key, fail),
      catch: (e) =>
        e instanceof ExportVerificationError
          ? e
          : fail("unreadable", `cannot read the export: ${e instanceof Error ? e.message : String(e)}`)
    })
  })

const verifyFile = (
  path: string,
  key: string,
  fail: (reason: VerificationFailure, message: string, position?: number) => ExportVerificationError
): VerificationSummary => {
  if (!NodeFs.existsSync(path)) throw fail("unreadable", `no such file`)
  /**
   * Order, checked as the records stream past (memory stays flat in the export's size):
   * the n-th record must carry seq n. Up to the first record that does not, every seq is
   * exactly the next one, so only that record needs keeping; whether the seq it
   * displaced turns up later tells a reordering from a missing record.
   */
  let records = 0
  let nextSeq = 0
  let deviation: { readonly position: number; readonly seq: number; readonly type: string | undefined; readonly expected: number } | undefined
  let expectedSeenLater = false
  const ordered = (here: number, seq: number, type: string | undefined) => {
    if (deviation === undefined) {
      if (seq === nextSeq) nextSeq++
      else deviation = { position: here, seq, type, expected: nextSeq }
    } else if (seq === deviation.expected) {
      expectedSeenLater = true
    }
  }
  let firstBad: ExportVerificationError | undefined
  let chain = CHAIN_SEED
  let manifest: Record<string, unknown> | undefined
  let manifestPosition = -1
  let afterManifest = -1
  let runId: string | undefined
  let runKind: "pipeline" | "loop" = "pipeline"
  let position = 0
  let payloadsChecked = 0

  const note = (error: ExportVerificationError) => {
    if (firstBad === undefined) firstBad = error
  }

  forEachJsonElement(path, (text) => {
    const here = position++
    if (manifest !== undefined) {
      if (afterManifest < 0) afterManifest = here
      return
    }
    let record: unknown
    try {
      record = JSON.parse(text)
    } catch {
      records++
      note(fail("modified", `${describe(here, undefined, undefined)}: modified — it is not valid JSON`, here))
      return
    }
    if (record === null || typeof record !== "object" || Array.isArray(record)) {
      records++
      note(fail("modified", `${describe(here, undefined, undefined)}: modified — it is not a JSON object`, here))
      return
    }
    const r = record as Record<string, unknown>
    const type = typeof r.record_type === "string" ? r.record_type : undefined
    if (type === "manifest") {
      manifest = r
      manifestPosition = here
      return
    }
    const seq = typeof r.seq === "number" && Number.isSafeInteger(r.seq) && r.seq >= 0 ? r.seq : undefined
    records++
    if (seq !== undefined) ordered(here, seq, type)
    if (type !== undefined && Object.hasOwn(RUN_TYPES, type) && runId === undefined && typeof r.run_id === "string") {
      runId = r.run_id
      runKind = RUN_TYPES[type]!
    }
    const signature = r.signature
    if (typeof signature !== "string") {
      note(
        here === 0
          ? fail("unsigned", `${describe(here, seq, type)} has no signature: this export is not signed (export with signing on)`, here)
          : fail("modified", `${describe(here, seq, type)}: modified — its signature was removed`, here)
      )
      return
    }
    chain = chainNext(chain, signature)
    let expected: string
    try {
      expected = createHmac("sha256", key).update(canonicalJsonUnsafe(unsigned(r))).digest("hex")
    } catch {
      expected = ""
    }
    if (expected !== signature) {
      note(
        fail(
          "modified",
          `${describe(here, seq, type)}: modified — its signature does not match its content (changed after export, or signed with another key)${
            naming(r)
          }`,
          here
        )
      )
    } else if (seq === undefined) {
      note(fail("modified", `${describe(here, seq, type)}: modified — it has no valid seq`, here))
    } else if (type === "call") {
      // Inline bodies (--include-payloads) must be the bodies the trail's hashes name.
      for (const part of ["request", "response"]) {
        const payload = r[`${part}_payload`]
        const hash = r[`${part}_hash`]
        if (typeof payload !== "string") continue
        payloadsChecked++
        if (typeof hash !== "string" || createHash("sha256").update(payload, "utf8").digest("hex") !== hash) {
          note(fail("modified", `${describe(here, seq, type)}: modified — its ${part}_payload does not hash to its ${part}_hash${naming(r)}`, here))
        }
      }
    }
  })

  if (firstBad === undefined && deviation !== undefined) {
    const { position: p, seq: s, type, expected } = deviation
    const where = describe(p, s, type)
    // Every seq before the deviation was exactly its position: a lower one is a copy.
    if (s < expected) note(fail("extra", `${where}: extra — a second copy of seq ${s}`, p))
    else if (expectedSeenLater) note(fail("reordered", `${where}: reordered — it comes before seq ${expected}`, p))
    else note(fail("missing", `${where}: missing — the record with seq ${expected} before it is not in the export`, p))
  }
  if (firstBad !== undefined) throw firstBad

  if (manifest === undefined) {
    throw fail("bad_manifest", `bad manifest — there is no manifest record after the ${records} records (truncated export?)`)
  }
  const m = manifest
  const at = describe(manifestPosition, undefined, undefined)
  if (typeof m.signature !== "string") throw fail("bad_manifest", `bad manifest (${at}) — it has no signature`, manifestPosition)
  let expected = ""
  try {
    expected = createHmac("sha256", key).update(canonicalJsonUnsafe(unsigned(m))).digest("hex")
  } catch {
    // stays empty: reported below
  }
  if (expected !== m.signature) {
    throw fail("bad_manifest", `bad manifest (${at}) — its signature does not match its content`, manifestPosition)
  }
  if (m.hash_algorithm !== HASH_ALGORITHM || m.signature_algorithm !== SIGNATURE_ALGORITHM || m.canonical_version !== CANONICAL_VERSION) {
    throw fail(
      "bad_manifest",
      `bad manifest — algorithms ${String(m.hash_algorithm)}/${String(m.signature_algorithm)}/${String(m.canonical_version)} ` +
        `are not ${HASH_ALGORITHM}/${SIGNATURE_ALGORITHM}/${CANONICAL_VERSION}`,
      manifestPosition
    )
  }
  if (m.record_count !== records) {
    const short = typeof m.record_count === "number" && m.record_count > records
    throw fail(
      "wrong_count",
      `wrong count — the manifest says ${String(m.record_count)} records, the export holds ${records}` +
        (short ? ` (the last ${(m.record_count as number) - records} are missing)` : ""),
      manifestPosition
    )
  }
  if (m.chain_hash !== chain) {
    throw fail("bad_manifest", `bad manifest — its chain hash does not match the records' signatures (records from another export?)`, manifestPosition)
  }
  if (runId !== undefined && m.run_id !== runId) {
    throw fail("bad_manifest", `bad manifest — it names run ${String(m.run_id)}, the records are of run ${runId}`, manifestPosition)
  }
  if (afterManifest >= 0) {
    throw fail("extra", `${describe(afterManifest, undefined, undefined)}: extra — a record after the manifest`, afterManifest)
  }
  return {
    path,
    run_id: String(m.run_id),
    run_kind: runKind,
    record_count: records,
    chain_hash: chain,
    exported_at: String(m.exported_at),
    payloads_checked: payloadsChecked
  }
}
