/**
 * The fingerprint of a run's source file (path, size, SHA-256), taken when the run
 * starts and kept in every checkpoint, so that a resume can refuse an input that
 * changed since: continuing over other data would deliver rows nobody read.
 */
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { createReadStream } from "node:fs"
import { stat } from "node:fs/promises"
import { resolve } from "node:path"
import type { PipelineSettings } from "../settings.js"
import type { SourceFileState } from "./checkpoint-state.js"

/** The configured source path, resolved against the working directory, if the source has one. */
export const sourcePathOf = (settings: Pick<PipelineSettings, "source">): string | undefined => {
  const path = settings.source.options?.path
  return typeof path === "string" && path !== "" ? resolve(path) : undefined
}

const hashFile = (path: string): Promise<string> =>
  new Promise((done, fail) => {
    const hash = createHash("sha256")
    createReadStream(path, { highWaterMark: 1 << 20 })
      .on("data", (chunk) => hash.update(chunk))
      .on("error", fail)
      .on("end", () => done(hash.digest("hex")))
  })

/**
 * Path, size and hash of the source file; null when the source reads no regular file
 * (no path, a FIFO, a device): such an input cannot be checked and is not resumable.
 */
export const fingerprintSource = (settings: Pick<PipelineSettings, "source">): Effect.Effect<SourceFileState | null> => {
  const path = sourcePathOf(settings)
  if (path === undefined) return Effect.succeed(null)
  return Effect.promise(async () => {
    try {
      const info = await stat(path)
      if (!info.isFile()) return null
      const sha256 = await hashFile(path)
      return { path, size: info.size, sha256 }
    } catch {
      return null
    }
  })
}
