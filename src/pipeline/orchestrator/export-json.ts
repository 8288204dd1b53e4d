/**
 * The JSON form of an export: one file, a JSON array with one record per line, or
 * JSON Lines. Plain `JSON.stringify` text; signatures cover the values, not this text.
 */
import { Effect, Stream } from "effect"
import type { ExportError } from "../../services/export-store.js"
import { outFile, type WrittenFile, writeError } from "./export-file.js"

/** Writes `records` (ending with the manifest when signed) to `path`; JSON Lines when `jsonl`. */
export const writeJsonExport = <E, R>(
  path: string,
  records: Stream.Stream<{ readonly record_type: string }, E, R>,
  jsonl: boolean
): Effect.Effect<{ readonly file: WrittenFile; readonly count: number }, E | ExportError, R> =>
  Effect.scoped(Effect.gen(function*() {
    const file = yield* outFile(path)
    let count = 0
    let written = 0
    yield* Stream.runForEachChunk(records, (chunk) =>
      Effect.zipRight(
        Effect.try({
          try: () => {
            for (const record of chunk) {
              const text = JSON.stringify(record)
              file.write(jsonl ? `${text}\n` : `${written === 0 ? "[\n" : ",\n"}${text}`)
              written++
              if (record.record_type !== "manifest") count++
            }
          },
          catch: (e) => writeError(path, "cannot write", e)
        }),
        file.drainIfFull()
      ))
    if (!jsonl) file.write(written === 0 ? "[]\n" : "\n]\n")
    return { file: yield* file.finish(), count }
  }))
