/**
 * The encrypted Landscape on real files: `LandscapeSql` with an `Encrypted` key writes a
 * SQLCipher 4 file that plain SQLite cannot read and SQLCipher settings can; each way of
 * opening it wrongly (no key, a wrong key, settings that say plaintext, a plaintext file
 * where an encrypted one is asked for, `:memory:`) is a LandscapeOpenError naming the
 * file and where the key comes from, and never creates or changes a file it should not.
 */
import { assert, describe, it } from "@effect/vitest"
import Database from "better-sqlite3"
import CipherDatabase from "better-sqlite3-multiple-ciphers"
import { Effect, Exit, Layer } from "effect"
import { existsSync, readFileSync, rmSync, statSync } from "node:fs"
import { join } from "node:path"
import type { NodeId } from "../../src/core/ids.js"
import { type LandscapeEncryption, LandscapeOpenError, SqliteLandscape } from "../../src/landscape/sqlite.js"
import { Recorder } from "../../src/services/recorder.js"
import { tempDir } from "../support/pipeline.js"
import * as Trail from "../support/trail.js"

const KEY_ENV = "TEST_KEY (landscape.encryption_key_env)"
const encrypted = (passphrase: string | undefined): LandscapeEncryption => ({ _tag: "Encrypted", passphrase, keyEnv: KEY_ENV })
const detect = (passphrase: string | undefined): LandscapeEncryption => ({ _tag: "Detect", passphrase, keyEnv: "RUNLEDGER_AUDIT_KEY" })

/** One run with one row, recorded in `file`; returns its id. */
const recordRun = (file: string, encryption: LandscapeEncryption) =>
  Effect.scoped(Effect.gen(function*() {
    const rec = yield* Recorder
    const runId = yield* rec.beginRun({ settings: { secret: "card 4111" } })
    yield* Trail.registerNode({ runId, nodeId: "src" as NodeId, pluginName: "csv", nodeType: "source", name: "source", config: {}, sequence: 0 })
    yield* Trail.createRow({ runId, sourceNodeId: "src" as NodeId, rowIndex: 0, data: { name: "Ada Lovelace" } })
    yield* rec.completeRun(runId, { status: "completed" })
    return runId
  }).pipe(Effect.provide(SqliteLandscape(file, { encryption }))))

const listRuns = (file: string, encryption: LandscapeEncryption) =>
  Effect.scoped(Effect.flatMap(Recorder, (rec) => rec.listRuns).pipe(Effect.provide(SqliteLandscape(file, { encryption }))))

const openError = (file: string, encryption: LandscapeEncryption) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(Effect.scoped(Layer.build(SqliteLandscape(file, { encryption }))))
    if (Exit.isSuccess(exit) || exit.cause._tag !== "Fail") throw new Error(`expected a typed failure, got ${String(exit)}`)
    return exit.cause.error
  })

describe("encrypted Landscape", () => {
  it.effect("writes a SQLCipher 4 file: plain SQLite cannot read it, the passphrase opens it", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-enc-")
      try {
        const file = join(dir, "audit.db")
        const runId = yield* recordRun(file, encrypted("correct horse"))
        const bytes = readFileSync(file)
        assert.notStrictEqual(bytes.subarray(0, 16).toString("latin1"), "SQLite format 3\u0000")
        // Nothing of the trail is readable in the file or its WAL.
        for (const f of [file, `${file}-wal`]) {
          if (existsSync(f)) assert.notInclude(readFileSync(f).toString("latin1"), "Ada Lovelace")
        }
        const plain = new Database(file)
        try {
          assert.throws(() => plain.prepare("SELECT count(*) FROM runs").get(), /file is not a database/)
        } finally {
          plain.close()
        }
        // SQLCipher 4 settings, given by hand, read it: the format is SQLCipher's own.
        const cipher = new CipherDatabase(file)
        try {
          cipher.pragma("cipher = 'sqlcipher'")
          cipher.pragma("legacy = 4")
          cipher.pragma("key = 'correct horse'")
          const rows = cipher.prepare("SELECT run_id FROM runs").all() as Array<{ run_id: string }>
          assert.deepStrictEqual(rows.map((r) => r.run_id), [runId])
        } finally {
          cipher.close()
        }
        // Reopened by settings (Encrypted) and without them (Detect), with the passphrase.
        assert.deepStrictEqual((yield* listRuns(file, encrypted("correct horse"))).map((r) => r.run_id), [runId])
        assert.deepStrictEqual((yield* listRuns(file, detect("correct horse"))).map((r) => r.run_id), [runId])
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("a wrong or missing key, or settings that say plaintext, are errors naming the file and the variable", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-enc-")
      try {
        const file = join(dir, "audit.db")
        yield* recordRun(file, encrypted("correct horse"))
        const before = readFileSync(file)

        const wrong = yield* openError(file, encrypted("battery staple"))
        assert.instanceOf(wrong, LandscapeOpenError)
        assert.include(wrong.message, file)
        assert.include(wrong.message, "TEST_KEY")
        assert.include(wrong.message, "passphrase is wrong")

        const wrongDetect = yield* openError(file, detect("battery staple"))
        assert.include(wrongDetect.message, "RUNLEDGER_AUDIT_KEY")

        const missing = yield* openError(file, encrypted(undefined))
        assert.include(missing.message, "TEST_KEY")
        assert.include(missing.message, "not set")

        const noKey = yield* openError(file, detect(undefined))
        assert.include(noKey.message, file)
        assert.include(noKey.message, "set RUNLEDGER_AUDIT_KEY")

        const plaintextSettings = yield* openError(file, { _tag: "Plaintext", keyEnv: "RUNLEDGER_AUDIT_KEY" })
        assert.include(plaintextSettings.message, "landscape.backend: sqlcipher")
        assert.include(plaintextSettings.message, file)

        assert.isTrue(readFileSync(file).equals(before), "a refused open leaves the file as it was")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("never records an encrypted run into a plaintext file, and never creates one without a key", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-enc-")
      try {
        const plain = join(dir, "plain.db")
        yield* recordRun(plain, { _tag: "Plaintext", keyEnv: "RUNLEDGER_AUDIT_KEY" })
        const size = statSync(plain).size
        const refused = yield* openError(plain, encrypted("correct horse"))
        assert.include(refused.message, "plaintext Landscape")
        assert.include(refused.message, plain)
        assert.strictEqual(statSync(plain).size, size)
        // A plaintext Landscape still opens when nothing asks for encryption, key or not.
        assert.strictEqual((yield* listRuns(plain, detect("correct horse"))).length, 1)

        const fresh = join(dir, "fresh.db")
        const noKey = yield* openError(fresh, encrypted(undefined))
        assert.include(noKey.message, "TEST_KEY")
        assert.isFalse(existsSync(fresh), "no file is created when the key is missing")

        const memory = yield* openError(":memory:", encrypted("correct horse"))
        assert.include(memory.message, ":memory:")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("a passphrase with quotes and non-ASCII characters round-trips", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-enc-")
      try {
        const file = join(dir, "audit.db")
        const passphrase = `it's "quoted" — ünïcode; DROP TABLE runs; --`
        const runId = yield* recordRun(file, encrypted(passphrase))
        assert.deepStrictEqual((yield* listRuns(file, detect(passphrase))).map((r) => r.run_id), [runId])
        const wrong = yield* openError(file, detect("it's"))
        assert.include(wrong.message, "passphrase is wrong")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))
})
