/**
 * An export's output file, written through a buffer into `<path>.partial`, hashed as
 * it grows, and fsynced and renamed into place only when complete, so a failed export
 * leaves no half file. File I/O goes through `node:fs/promises`, as in the pipeline's
 * file sinks.
 */
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { type FileHandle, mkdir, open, rename, rm } from "node:fs/promises"
import * as NodePath from "node:path"
import { ExportError } from "../../services/export-store.js"

export interface WrittenFile {
  readonly path: string
  readonly contentHash: string
  readonly sizeBytes: number
}

const messageOf = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e)

export const writeError = (path: string, what: string, cause: unknown) =>
  new ExportError({ reason: "Write", message: `${what} ${path}: ${messageOf(cause)}`, cause })

/** Buffered text is written once it reaches this many characters. */
const DRAIN_CHARS = 1 << 20

export class OutFile {
  private readonly hash = createHash("sha256")
  private size = 0
  private parts: Array<string> = []
  private pending = 0
  private readonly tmp: string

  constructor(readonly path: string, private handle: FileHandle | undefined) {
    this.tmp = OutFile.partialOf(path)
  }

  static partialOf(path: string): string {
    return `${path}.partial`
  }

  /** Buffers `text`; it reaches the file at the next `drainIfFull` past the threshold, or at `finish`. */
  write(text: string): void {
    this.parts.push(text)
    this.pending += text.length
  }

  /** Writes the buffered text once about a megabyte of it has gathered. */
  drainIfFull(): Effect.Effect<void, ExportError> {
    return Effect.suspend(() => this.pending >= DRAIN_CHARS ? this.attempt("cannot write", () => this.drain()) : Effect.void)
  }

  /** Writes what is left, fsyncs, closes and renames the file into place. */
  finish(): Effect.Effect<WrittenFile, ExportError> {
    return this.attempt("cannot finish", async () => {
      await this.drain()
      const handle = this.handle!
      await handle.sync()
      this.handle = undefined
      await handle.close()
      await rename(this.tmp, this.path)
      return { path: this.path, contentHash: this.hash.digest("hex"), sizeBytes: this.size }
    })
  }

  /** Closes the handle if still open and removes the partial file (a no-op after `finish`). */
  abort(): Effect.Effect<void> {
    return Effect.promise(async () => {
      const handle = this.handle
      this.handle = undefined
      if (handle !== undefined) await handle.close().catch(() => undefined)
      await rm(this.tmp, { force: true })
    })
  }

  private attempt<A>(what: string, f: () => Promise<A>): Effect.Effect<A, ExportError> {
    return Effect.tryPromise({ try: f, catch: (e) => writeError(this.path, what, e) })
  }

  private async drain(): Promise<void> {
    if (this.parts.length === 0) return
    const buf = Buffer.from(this.parts.join(""), "utf8")
    this.parts = []
    this.pending = 0
    let offset = 0
    while (offset < buf.length) offset += (await this.handle!.write(buf, offset, buf.length - offset)).bytesWritten
    this.hash.update(buf)
    this.size += buf.length
  }
}

/** An OutFile as a scoped resource: its partial file is removed unless `finish` ran. */
export const outFile = (path: string) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        await mkdir(NodePath.dirname(path), { recursive: true })
        return new OutFile(path, await open(OutFile.partialOf(path), "w"))
      },
      catch: (e) => writeError(path, "cannot create", e)
    }),
    (file) => file.abort()
  )

/** The directory of a CSV export: the export sink's path without its extension. */
export const csvExportDir = (sinkPath: string): string => {
  const abs = NodePath.resolve(sinkPath)
  const ext = NodePath.extname(abs)
  return ext === "" ? abs : abs.slice(0, -ext.length)
}
