/**
 * An output file that is only ever appended to, opened lazily, hashed as it grows.
 *
 * File sinks stream: the engine hands them many small batches, so the file stays
 * open and each batch is appended. The SHA-256 and the size of the file's content are
 * kept up to date from the bytes written (plus, in append mode, the bytes that were
 * already there), so the artifact needs no second read of the file.
 */
import { createHash, type Hash } from "node:crypto"
import { createReadStream } from "node:fs"
import { mkdir, open, stat, type FileHandle } from "node:fs/promises"
import { dirname } from "node:path"
import { Effect } from "effect"
import type { ArtifactInfo, PluginRunError } from "../protocol.js"
import { type Lifecycle, runError, type SinkLabel, type TextEncoding } from "./common.js"

/** Encoded text is written in pieces of about this many characters. */
export const CHUNK_CHARS = 1 << 18

export interface TextFile {
  readonly path: string
  /** True once the file has been opened (created or appended to). */
  readonly isOpen: () => boolean
  /** Creates missing parent directories; creates no file. */
  readonly prepare: Effect.Effect<void, PluginRunError>
  /** Opens the file: truncating (`write`) or appending (`append`). */
  readonly open: (mode: "write" | "append") => Effect.Effect<void, PluginRunError>
  /** Size in bytes of the file's content so far (0 before open). */
  readonly size: () => number
  /** Appends encoded text. */
  readonly append: (text: string) => Effect.Effect<void, PluginRunError>
  /** fsync: everything appended so far is on disk. */
  readonly sync: Effect.Effect<void, PluginRunError>
  /** Releases the handle; safe to call again. */
  readonly close: Effect.Effect<void>
  /** Path, hash and size of the content; undefined if the file was never opened. */
  readonly artifact: () => ArtifactInfo | undefined
}

const hashExisting = (path: string, hash: Hash): Promise<number> =>
  new Promise((resolve, reject) => {
    let size = 0
    const stream = createReadStream(path)
    stream.on("data", (chunk) => {
      const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk
      hash.update(buf)
      size += buf.length
    })
    stream.on("error", reject)
    stream.on("end", () => resolve(size))
  })

const writeAll = async (handle: FileHandle, buf: Buffer): Promise<void> => {
  let offset = 0
  while (offset < buf.length) {
    const { bytesWritten } = await handle.write(buf, offset, buf.length - offset)
    offset += bytesWritten
  }
}

export const makeTextFile = (label: SinkLabel, path: string, encoding: TextEncoding): TextFile => {
  let handle: FileHandle | undefined
  let hash: Hash | undefined
  let size = 0
  let opened = false

  const attempt = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, PluginRunError> =>
    Effect.tryPromise({ try: f, catch: (cause) => runError(label, what, cause) })

  const writeBuffer = async (buf: Buffer): Promise<void> => {
    if (handle === undefined || hash === undefined || buf.length === 0) return
    await writeAll(handle, buf)
    hash.update(buf)
    size += buf.length
  }

  const encode = (text: string): Effect.Effect<Buffer, PluginRunError> =>
    Effect.try({
      try: () => encoding.encode(text),
      catch: (cause) => runError(label, `cannot encode output as ${encoding.name}`, cause)
    })

  return {
    path,
    isOpen: () => opened,
    size: () => size,
    prepare: attempt(`cannot create the parent directory of ${path}`, () => mkdir(dirname(path), { recursive: true })).pipe(
      Effect.asVoid
    ),
    open: (mode) =>
      attempt(`cannot open ${path} for ${mode === "append" ? "appending" : "writing"}`, async () => {
        if (opened) return
        await mkdir(dirname(path), { recursive: true })
        const h = createHash("sha256")
        let existing = 0
        const fh = await open(path, mode === "append" ? "a" : "w")
        try {
          if (mode === "append" && (await stat(path)).size > 0) existing = await hashExisting(path, h)
        } catch (e) {
          await fh.close()
          throw e
        }
        handle = fh
        hash = h
        size = existing
        opened = true
        if (existing === 0 && encoding.bom !== undefined) await writeBuffer(Buffer.from(encoding.bom))
      }),
    append: (text) =>
      text.length === 0
        ? Effect.void
        : Effect.flatMap(encode(text), (buf) => attempt(`cannot write to ${path}`, () => writeBuffer(buf))),
    sync: Effect.suspend(() =>
      handle === undefined ? Effect.void : attempt(`cannot sync ${path} to disk`, () => handle!.sync())
    ),
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
