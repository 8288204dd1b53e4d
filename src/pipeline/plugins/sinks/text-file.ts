/**
 * An output file that is only ever appended to, opened lazily, hashed as it grows,
 * and cut back to its last durable length when a write or an fsync fails.
 *
 * File sinks stream: the engine hands them many small batches, so the file stays
 * open and each batch is appended. The SHA-256 and the size of the file's content are
 * kept up to date from the bytes written (plus, in append mode, the bytes that were
 * already there), so the artifact needs no second read of the file.
 *
 * Durability: `sync` (fsync) marks the current length durable. A failed append or
 * sync cuts the file back to that length (ftruncate) before failing, so a full disk
 * never leaves a torn last record behind; `rollback` does the same after any other
 * failure of a batch. Every write names its position (the current length): after a
 * cut the next byte lands right at the cut, whatever the descriptor's offset.
 */
import { createHash, type Hash } from "node:crypto"
import { createReadStream } from "node:fs"
import { mkdir, open, stat, type FileHandle } from "node:fs/promises"
import { dirname } from "node:path"
import { Effect } from "effect"
import type { ArtifactInfo, PluginRunError, SinkCommitted } from "../protocol.js"
import { type Lifecycle, runError, type SinkLabel, type TextEncoding } from "./common.js"
import { describeIoCause, type Fault, injectedError, ioError } from "./io.js"

/** Encoded text is written in pieces of about this many characters. */
export const CHUNK_CHARS = 1 << 18

export type OpenMode = "write" | "append"

export interface FileMark {
  readonly size: number
  readonly hash: Hash
}

export interface TextFile {
  readonly path: string
  /** True once the file has been opened (created, appended to, or cut by `truncate`). */
  readonly isOpen: () => boolean
  /** Creates missing parent directories and, in append mode, notes the existing length; creates no file. */
  readonly prepare: Effect.Effect<void, PluginRunError>
  /** Opens the file: truncating (`write`) or appending (`append`). Does nothing once open. */
  readonly open: Effect.Effect<void, PluginRunError>
  /** Size in bytes of the file's content so far (before open: the durable length). */
  readonly size: () => number
  /**
   * Length at the last successful sync: before open, the length a first write starts
   * from (the existing file's in append mode, else 0); right after open, the length
   * the file was opened with.
   */
  readonly durableSize: () => number
  /** Appends encoded text; on an I/O error cuts the file back to `durableSize` and fails. */
  readonly append: (text: string) => Effect.Effect<void, PluginRunError>
  /** fsync; on success the current length is durable, on failure the file is cut back first. */
  readonly sync: Effect.Effect<void, PluginRunError>
  /** The current length and hash, to cut back to with `rollbackTo` (only while open). */
  readonly mark: () => FileMark
  /** Cuts the file back to `mark` if it grew past it (after a batch failed for a reason other than I/O). */
  readonly rollbackTo: (mark: FileMark) => Effect.Effect<void, PluginRunError>
  /**
   * Cuts the file to `bytes` and makes that durable, opening an existing file for
   * appending first if needed (a missing file with `bytes` 0 is left missing).
   * Fails if the file is shorter than `bytes`.
   */
  readonly truncate: (bytes: number) => Effect.Effect<void, PluginRunError>
  /** Releases the handle; safe to call again. */
  readonly close: Effect.Effect<void>
  /** Path, hash and size of the content; undefined if the file was never opened. */
  readonly artifact: () => ArtifactInfo | undefined
}

/** Hashes the first `limit` bytes of a file (all of it when undefined); resolves to the bytes read. */
const hashPrefix = (path: string, hash: Hash, limit?: number): Promise<number> =>
  new Promise((resolve, reject) => {
    if (limit === 0) return resolve(0)
    let size = 0
    const stream = createReadStream(path, limit === undefined ? {} : { start: 0, end: limit - 1 })
    stream.on("data", (chunk) => {
      const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk
      hash.update(buf)
      size += buf.length
    })
    stream.on("error", reject)
    stream.on("end", () => resolve(size))
  })

const statSize = (path: string): Promise<number | undefined> =>
  stat(path).then(
    (st) => st.size,
    (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e))
  )

export const makeTextFile = (
  label: SinkLabel,
  path: string,
  encoding: TextEncoding,
  mode: OpenMode,
  faults: ReadonlyArray<Fault> = []
): TextFile => {
  let handle: FileHandle | undefined
  let hash: Hash | undefined
  let size = 0
  let opened = false
  /** Length and hash at the last point known durable. */
  let durable = 0
  let durableHash: Hash | undefined

  const writeFault = faults.find((f) => f.on === "write")
  const syncFault = faults.find((f) => f.on === "fsync")

  const attempt = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, PluginRunError> =>
    Effect.tryPromise({ try: f, catch: (cause) => runError(label, what, cause) })

  /** Writes all of `buf` at the end of the content; `size` follows every byte that reached the file. */
  const writeAll = async (fh: FileHandle, buf: Buffer): Promise<void> => {
    let offset = 0
    let end = buf.length
    if (writeFault !== undefined && size + buf.length > writeFault.afterBytes) {
      end = Math.max(0, writeFault.afterBytes - size)
    }
    while (offset < end) {
      const { bytesWritten } = await fh.write(buf, offset, end - offset, size)
      hash!.update(buf.subarray(offset, offset + bytesWritten))
      offset += bytesWritten
      size += bytesWritten
    }
    if (end < buf.length) throw injectedError(writeFault!.code, "write", path)
  }

  /** ftruncate to the durable length, restoring the hash to match; resolves to an error text if that failed. */
  const cutBack = async (): Promise<string | undefined> => {
    if (handle === undefined || size === durable) return undefined
    try {
      await handle.truncate(durable)
      size = durable
      hash = durableHash!.copy()
      return undefined
    } catch (e) {
      return describeIoCause(e)
    }
  }

  const afterCut = (problem: string | undefined): string =>
    problem === undefined
      ? `; the file was cut back to its last durable length (${durable} bytes)`
      : `; cutting the file back to its last durable length (${durable} bytes) failed too (${problem}), so it may end in a partial record`

  const encode = (text: string): Effect.Effect<Buffer, PluginRunError> =>
    Effect.try({
      try: () => encoding.encode(text),
      catch: (cause) => runError(label, `cannot encode output as ${encoding.name}`, cause)
    })

  const appendBuffer = (buf: Buffer): Effect.Effect<void, PluginRunError> =>
    Effect.tryPromise({
      try: () => (handle === undefined || buf.length === 0 ? Promise.resolve() : writeAll(handle, buf)),
      catch: (cause) => cause
    }).pipe(
      Effect.catchAll((cause) =>
        Effect.flatMap(
          Effect.promise(cutBack),
          (problem) => Effect.fail(ioError(label, "write", `cannot write to ${path}`, path, cause, afterCut(problem)))
        )
      )
    )

  const doSync = async (): Promise<void> => {
    if (handle === undefined) return
    if (syncFault !== undefined && size > syncFault.afterBytes) throw injectedError(syncFault.code, "fsync", path)
    await handle.sync()
  }

  const markDurable = () => {
    durable = size
    durableHash = hash!.copy()
  }

  const openHandle = async (flags: "w" | "a"): Promise<void> => {
    await mkdir(dirname(path), { recursive: true })
    const h = createHash("sha256")
    let existing = 0
    const fh = await open(path, flags)
    try {
      if (flags === "a") existing = await hashPrefix(path, h)
    } catch (e) {
      await fh.close()
      throw e
    }
    handle = fh
    hash = h
    size = existing
    opened = true
    markDurable()
  }

  return {
    path,
    isOpen: () => opened,
    size: () => (opened ? size : durable),
    durableSize: () => durable,
    prepare: attempt(`cannot create the parent directory of ${path}`, async () => {
      await mkdir(dirname(path), { recursive: true })
      if (!opened) durable = mode === "append" ? (await statSize(path)) ?? 0 : 0
    }),
    open: Effect.suspend(() =>
      opened
        ? Effect.void
        : Effect.tryPromise({ try: () => openHandle(mode === "append" ? "a" : "w"), catch: (cause) => cause }).pipe(
          Effect.mapError((cause) =>
            ioError(label, "open", `cannot open ${path} for ${mode === "append" ? "appending" : "writing"}`, path, cause)
          )
        )
    ),
    append: (text) =>
      text.length === 0 ? Effect.void : Effect.gen(function*() {
        // A byte-order mark starts the content, also after a cut back to nothing.
        const bom = size === 0 && encoding.bom !== undefined ? Buffer.from(encoding.bom) : undefined
        const body = yield* encode(text)
        yield* appendBuffer(bom === undefined ? body : Buffer.concat([bom, body]))
      }),
    sync: Effect.suspend(() =>
      handle === undefined ? Effect.void : Effect.tryPromise({ try: doSync, catch: (cause) => cause }).pipe(
        Effect.matchEffect({
          onSuccess: () => Effect.sync(markDurable),
          onFailure: (cause) =>
            Effect.flatMap(
              Effect.promise(async () => {
                const problem = await cutBack()
                // the cut itself is worth making durable; its own failure is already reported
                if (problem === undefined) await handle?.sync().catch(() => undefined)
                return problem
              }),
              (problem) => Effect.fail(ioError(label, "sync", `cannot sync ${path} to disk`, path, cause, afterCut(problem)))
            )
        })
      )
    ),
    mark: () => ({ size, hash: hash!.copy() }),
    rollbackTo: (mark) =>
      Effect.suspend(() =>
        handle === undefined || size <= mark.size ? Effect.void : Effect.tryPromise({
          try: async () => {
            await handle!.truncate(mark.size)
            size = mark.size
            hash = mark.hash.copy()
          },
          catch: (cause) =>
            ioError(label, "truncate", `cannot cut ${path} back to ${mark.size} bytes after a failed write`, path, cause, "; the file may end in a partial record")
        })
      ),
    truncate: (bytes) =>
      Effect.tryPromise({
        try: async () => {
          if (!opened) {
            const existing = await statSize(path)
            if (existing === undefined) {
              if (bytes === 0) return
              throw new Error(`the file does not exist, but ${bytes} bytes of it were committed`)
            }
            await openHandle("a")
          }
          if (bytes > size) throw new Error(`the file holds ${size} bytes, fewer than the ${bytes} committed`)
          if (bytes < size) {
            await handle!.truncate(bytes)
            if (bytes === durable) hash = durableHash!.copy()
            else {
              const h = createHash("sha256")
              await hashPrefix(path, h, bytes)
              hash = h
            }
            size = bytes
          }
          await handle!.sync()
          markDurable()
        },
        catch: (cause) => cause
      }).pipe(Effect.mapError((cause) => ioError(label, "truncate", `cannot cut ${path} back to ${bytes} bytes`, path, cause))),
    close: Effect.promise(async () => {
      const h = handle
      handle = undefined
      if (h !== undefined) await h.close().catch(() => undefined)
    }),
    artifact: () =>
      opened && hash !== undefined
        ? { pathOrUri: path, contentHash: hash.copy().digest("hex"), sizeBytes: size }
        : undefined
  }
}

/**
 * Collects text and appends it to `file` whenever about CHUNK_CHARS have gathered,
 * so a large batch never sits in memory as one string.
 */
export const makeChunker = (file: TextFile) => {
  let parts: Array<string> = []
  let length = 0
  const drain = (): Effect.Effect<void, PluginRunError> => {
    if (length === 0) return Effect.void
    const text = parts.join("")
    parts = []
    length = 0
    return file.append(text)
  }
  return {
    push: (text: string): Effect.Effect<void, PluginRunError> => {
      parts.push(text)
      length += text.length
      return length >= CHUNK_CHARS ? drain() : Effect.void
    },
    drain
  }
}

/**
 * The committed state of a file sink: the durable length and the rows in it, taken
 * at each successful flush. Before the first flush it is the length a first write
 * starts from, with no rows.
 */
export const makeCommits = (file: TextFile) => {
  let state: SinkCommitted | undefined
  return {
    get: (): SinkCommitted => state ?? { rows: 0, bytes: file.durableSize() },
    /** After a successful sync: `rows` rows are in the file's durable length. */
    mark: (rows: number): void => {
      state = { rows, bytes: file.durableSize() }
    },
    set: (next: SinkCommitted): void => {
      state = { rows: next.rows, bytes: next.bytes }
    }
  }
}

/**
 * The end of a file sink's lifecycle: `close` (idempotent; the file is closed once)
 * and `artifact`, both serialised with the sink's other operations.
 */
export const closeAndArtifact = (life: Lifecycle, file: TextFile) => ({
  close: life.exclusive(
    Effect.suspend(() => {
      if (life.phase() === "closed") return Effect.void
      life.setPhase("closed")
      return file.close
    })
  ),
  artifact: life.exclusive(Effect.sync(() => file.artifact()))
})
