/**
 * How a Landscape file is opened: what its first bytes say it is (new, plaintext SQLite,
 * encrypted, or text that is no database), which passphrase keys the connection, and
 * the errors of opening it otherwise than configured — each naming the file and where
 * the passphrase comes from.
 */
import { Data, Effect } from "effect"
import { closeSync, openSync, readSync, statSync } from "node:fs"
import { RecorderError } from "../services/recorder.js"
import { notLandscape } from "./recorder-errors.js"
import { makeLandscapeClient } from "./sqlite-client.js"

/** A Landscape that cannot be opened as configured: a key problem, a journal or payload store that cannot be set up. */
export class LandscapeOpenError extends Data.TaggedError("LandscapeOpenError")<{
  readonly file: string
  readonly reason: "Encryption" | "Journal" | "PayloadStore"
  readonly message: string
}> {}

const SQLITE_HEADER = "SQLite format 3\u0000"

/** What the start of a file says it is. */
type FileKind = "new" | "plaintext" | "text" | "opaque"

/**
 * A plaintext SQLite file starts with its header; an encrypted one (SQLCipher: a random
 * salt, then ciphertext) with bytes that look random; a file that reads as text is
 * neither (a mistyped --db pointing at a CSV).
 */
const fileKind = (filename: string): Effect.Effect<FileKind, RecorderError> =>
  Effect.suspend(() => {
    let size = 0
    try {
      size = statSync(filename).size
    } catch {
      return Effect.succeed("new" as const)
    }
    if (size === 0) return Effect.succeed("new" as const)
    const head = Buffer.alloc(Math.min(size, 512))
    try {
      const fd = openSync(filename, "r")
      try {
        readSync(fd, head, 0, head.length, 0)
      } finally {
        closeSync(fd)
      }
    } catch (e) {
      return Effect.fail(notLandscape(filename, `it cannot be read (${String(e)})`))
    }
    if (head.subarray(0, 16).toString("latin1") === SQLITE_HEADER) return Effect.succeed("plaintext" as const)
    const printable = head.every((b) => b === 9 || b === 10 || b === 13 || (b >= 32 && b !== 127))
    return Effect.succeed(printable ? "text" as const : "opaque" as const)
  })

/**
 * How the Landscape file is encrypted, from the settings (run, resume) or from the file
 * itself (the commands that only read one). `keyEnv` says where the passphrase comes
 * from, for the messages (`RUNLEDGER_AUDIT_KEY (or ELSPETH_AUDIT_KEY)`).
 */
export type LandscapeEncryption =
  /** The settings say `backend: sqlite`: an encrypted file is refused. */
  | { readonly _tag: "Plaintext"; readonly keyEnv: string }
  /** The settings say `backend: sqlcipher`: a new file is created encrypted; a plaintext one is refused. */
  | { readonly _tag: "Encrypted"; readonly passphrase: string | undefined; readonly keyEnv: string }
  /** No settings: an encrypted file is opened with the passphrase; a new one is plaintext. */
  | { readonly _tag: "Detect"; readonly passphrase: string | undefined; readonly keyEnv: string }

/** Where runledger reads the Landscape passphrase when the settings do not name a variable. */
export const DEFAULT_KEY_ENVS = ["RUNLEDGER_AUDIT_KEY", "ELSPETH_AUDIT_KEY"] as const

/** The passphrase in the first of `names` that is set and not blank. */
export const passphraseFrom = (
  env: Readonly<Record<string, string | undefined>>,
  names: ReadonlyArray<string>
): string | undefined => {
  for (const name of names) {
    const value = env[name]
    if (value !== undefined && value.trim() !== "") return value
  }
  return undefined
}

/** `A (or B)` for the messages. */
export const describeKeyEnvs = (names: ReadonlyArray<string>): string =>
  names.length <= 1 ? (names[0] ?? "") : `${names[0]} (or ${names.slice(1).join(", or ")})`

const encryptionError = (file: string, message: string) => new LandscapeOpenError({ file, reason: "Encryption", message })

/** The passphrase to key the connection with (undefined: plaintext), or why the file cannot be opened. */
const choosePassphrase = (
  filename: string,
  kind: FileKind,
  encryption: LandscapeEncryption
): Effect.Effect<string | undefined, LandscapeOpenError | RecorderError> => {
  if (kind === "text") return Effect.fail(notLandscape(filename, "it is not a SQLite database"))
  switch (encryption._tag) {
    case "Plaintext":
      return kind === "opaque"
        ? Effect.fail(encryptionError(
          filename,
          `${filename} is not a plaintext SQLite database (it looks encrypted), and the settings do not say ` +
            `landscape.backend: sqlcipher; for an encrypted Landscape set it, with the passphrase in ${encryption.keyEnv}`
        ))
        : Effect.succeed(undefined)
    case "Encrypted":
      if (filename === ":memory:") {
        return Effect.fail(encryptionError(filename, "landscape.backend is sqlcipher: an encrypted Landscape needs a file, not :memory:"))
      }
      if (encryption.passphrase === undefined) {
        return Effect.fail(encryptionError(
          filename,
          `landscape.backend is sqlcipher, but ${encryption.keyEnv} is not set (or is blank): ` +
            `it holds the passphrase of the encrypted Landscape ${filename}`
        ))
      }
      if (kind === "plaintext") {
        return Effect.fail(encryptionError(
          filename,
          `${filename} is a plaintext Landscape, but landscape.backend is sqlcipher: runledger does not record into ` +
            `a plaintext file what was meant to be encrypted; give another landscape.url (or --db), or backend: sqlite`
        ))
      }
      return Effect.succeed(encryption.passphrase)
    case "Detect":
      if (kind !== "opaque") return Effect.succeed(undefined)
      if (encryption.passphrase === undefined) {
        return Effect.fail(encryptionError(
          filename,
          `${filename} is not a plaintext SQLite database: if it is an encrypted Landscape, set ${encryption.keyEnv} to its passphrase`
        ))
      }
      return Effect.succeed(encryption.passphrase)
  }
}

/** Without options: whatever the file is, and an encrypted one refused (no passphrase is known). */
export const DEFAULT_ENCRYPTION: LandscapeEncryption = { _tag: "Detect", passphrase: undefined, keyEnv: describeKeyEnvs(DEFAULT_KEY_ENVS) }

/** Opens the connection, keyed as `encryption` says; a wrong key is a LandscapeOpenError. */
export const openLandscapeClient = (
  filename: string,
  encryption: LandscapeEncryption,
  access: { readonly readonly?: boolean } = {}
) =>
  Effect.gen(function*() {
    const kind = filename === ":memory:" ? "new" as const : yield* fileKind(filename)
    const passphrase = yield* choosePassphrase(filename, kind, encryption)
    return yield* makeLandscapeClient({ filename, passphrase, readonly: access.readonly }).pipe(
      Effect.mapError((e): LandscapeOpenError | RecorderError => {
        const code = (e.cause as { code?: unknown } | undefined)?.code
        const text = String((e.cause as { message?: unknown } | undefined)?.message ?? e.message)
        if (code === "SQLITE_NOTADB" && passphrase !== undefined) {
          return encryptionError(
            filename,
            `${filename} cannot be opened with the passphrase in ${encryption.keyEnv}: ` +
              `the passphrase is wrong, or the file is not an encrypted Landscape`
          )
        }
        if (code === "SQLITE_NOTADB") return notLandscape(filename, `it is not a SQLite database (${text})`)
        return new RecorderError({ reason: "Database", message: `opening ${filename}: ${text}`, cause: e })
      })
    )
  })

