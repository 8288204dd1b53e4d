/**
 * The filesystem payload store: a content-addressed copy of each source row, in the
 * file named by the SHA-256 the Landscape records for it (`rows.source_data_hash`),
 * under `<base>/<first two hex digits>/<hash>`. The bytes are the row's canonical JSON
 * (`rows.source_data_json`), so anyone can check a file against the trail with
 * `sha256sum`.
 *
 * Files are written to a temporary name and renamed, so a reader never sees half a
 * payload; a file that is already there is checked against its name, never replaced.
 * The calls are synchronous: the recorder writes a flush's payloads before the
 * transaction that records their rows, so a row in the Landscape always has its file.
 */
import { createHash, randomBytes } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import * as NodeFsPromises from "node:fs/promises"
import * as NodePath from "node:path"
import { Data } from "effect"

export class PayloadStoreError extends Data.TaggedError("PayloadStoreError")<{
  readonly reason: "InvalidHash" | "Integrity" | "NotFound" | "Io"
  readonly path: string
  readonly message: string
}> {}

const SHA256_HEX = /^[0-9a-f]{64}$/

const sha256 = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex")

export interface PayloadStore {
  /** The folder the payloads are kept in (absolute). */
  readonly basePath: string
  /** Where the payload named `hash` is (or would be) stored. */
  readonly pathOf: (hash: string) => string
  /** Stores `content` under `hash`, its SHA-256; keeps (after checking) a file already there. */
  readonly put: (hash: string, content: string) => PayloadStoreError | undefined
  /** The payload named `hash`, checked against its name. */
  readonly get: (hash: string) => string | PayloadStoreError
  /** `put` off the event loop (the file system's thread pool): for callers with work in flight. */
  readonly putAsync: (hash: string, content: string) => Promise<PayloadStoreError | undefined>
}

const ioMessage = (e: unknown) => {
  const err = e as { code?: string; message?: string }
  return err.code ?? err.message ?? String(e)
}

/** A store in `basePath` (resolved against the working directory), created on first write. */
export const filesystemPayloadStore = (basePath: string): PayloadStore => {
  const base = NodePath.resolve(basePath)
  const folders = new Set<string>()
  const pathOf = (hash: string) => NodePath.join(base, hash.slice(0, 2), hash)

  const check = (hash: string): PayloadStoreError | undefined =>
    SHA256_HEX.test(hash)
      ? undefined
      : new PayloadStoreError({ reason: "InvalidHash", path: base, message: `'${hash.slice(0, 70)}' is not a SHA-256 hex digest` })

  const get = (hash: string): string | PayloadStoreError => {
    const invalid = check(hash)
    if (invalid !== undefined) return invalid
    const path = pathOf(hash)
    let bytes: Buffer
    try {
      bytes = readFileSync(path)
    } catch (e) {
      const code = (e as { code?: string }).code
      return code === "ENOENT"
        ? new PayloadStoreError({ reason: "NotFound", path, message: `no payload ${hash} in ${base}` })
        : new PayloadStoreError({ reason: "Io", path, message: `cannot read ${path}: ${ioMessage(e)}` })
    }
    const actual = sha256(bytes)
    if (actual !== hash) {
      return new PayloadStoreError({
        reason: "Integrity",
        path,
        message: `${path} does not hold payload ${hash} (its content hashes to ${actual}): the store was changed`
      })
    }
    return bytes.toString("utf8")
  }

  /** Where `content` goes and its bytes, once its name is a valid hash and its own. */
  const prepared = (hash: string, content: string): { readonly path: string; readonly bytes: Buffer } | PayloadStoreError => {
    const invalid = check(hash)
    if (invalid !== undefined) return invalid
    const path = pathOf(hash)
    const bytes = Buffer.from(content, "utf8")
    const actual = sha256(bytes)
    if (actual !== hash) {
      return new PayloadStoreError({ reason: "Integrity", path, message: `payload content hashes to ${actual}, not to its name ${hash}` })
    }
    return { path, bytes }
  }

  const put = (hash: string, content: string): PayloadStoreError | undefined => {
    const ready = prepared(hash, content)
    if (ready instanceof PayloadStoreError) return ready
    const { path, bytes } = ready
    if (existsSync(path)) {
      const existing = get(hash)
      return typeof existing === "string" ? undefined : existing
    }
    const folder = NodePath.dirname(path)
    const temp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`
    try {
      if (!folders.has(folder)) {
        mkdirSync(folder, { recursive: true })
        folders.add(folder)
      }
      writeFileSync(temp, bytes, { flag: "wx" })
      renameSync(temp, path)
      return undefined
    } catch (e) {
      try {
        rmSync(temp, { force: true })
      } catch {
        // The temporary file stays; the error below is what matters.
      }
      return new PayloadStoreError({ reason: "Io", path, message: `cannot write ${path}: ${ioMessage(e)}` })
    }
  }

  /** Hashes known to be stored by this process (a blob is never changed once there). */
  const known = new Set<string>()
  const putAsync = async (hash: string, content: string): Promise<PayloadStoreError | undefined> => {
    if (known.has(hash)) return undefined
    const ready = prepared(hash, content)
    if (ready instanceof PayloadStoreError) return ready
    const { path, bytes } = ready
    try {
      const existing = await NodeFsPromises.readFile(path)
      if (sha256(existing) !== hash) {
        return new PayloadStoreError({ reason: "Integrity", path, message: `${path} does not hold payload ${hash}: the store was changed` })
      }
      known.add(hash)
      return undefined
    } catch (e) {
      if ((e as { code?: string }).code !== "ENOENT") return new PayloadStoreError({ reason: "Io", path, message: `cannot read ${path}: ${ioMessage(e)}` })
    }
    const folder = NodePath.dirname(path)
    const temp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`
    try {
      if (!folders.has(folder)) {
        await NodeFsPromises.mkdir(folder, { recursive: true })
        folders.add(folder)
      }
      await NodeFsPromises.writeFile(temp, bytes, { flag: "wx" })
      await NodeFsPromises.rename(temp, path)
      known.add(hash)
      return undefined
    } catch (e) {
      await NodeFsPromises.rm(temp, { force: true }).catch(() => undefined)
      return new PayloadStoreError({ reason: "Io", path, message: `cannot write ${path}: ${ioMessage(e)}` })
    }
  }

  return { basePath: base, pathOf, put, get, putAsync }
}
