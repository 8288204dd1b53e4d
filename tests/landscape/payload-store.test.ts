/**
 * The filesystem payload store: files named by the SHA-256 of their content under a
 * two-digit folder, checked on every read and before a file already there is kept;
 * and the recorder writing one per source row, named by `rows.source_data_hash`,
 * before the row reaches the Landscape.
 */
import { assert, describe, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Exit } from "effect"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { NodeId } from "../../src/core/ids.js"
import { filesystemPayloadStore } from "../../src/landscape/payload-store.js"
import { SqliteLandscape } from "../../src/landscape/sqlite.js"
import { Recorder } from "../../src/services/recorder.js"
import { tempDir } from "../support/pipeline.js"
import * as Trail from "../support/trail.js"

const sha = (text: string) => createHash("sha256").update(text).digest("hex")

describe("filesystem payload store", () => {
  it("stores content under its hash and reads it back checked", () => {
    const dir = tempDir("rl-payload-")
    try {
      const store = filesystemPayloadStore(join(dir, "p"))
      const content = `{"name":"Zoë","n":1}`
      const hash = sha(content)
      assert.isUndefined(store.put(hash, content))
      const path = join(dir, "p", hash.slice(0, 2), hash)
      assert.strictEqual(store.pathOf(hash), path)
      assert.strictEqual(readFileSync(path, "utf8"), content)
      assert.strictEqual(store.get(hash), content)
      // The same content again is kept as it is (deduplicated); no temporary file is left.
      assert.isUndefined(store.put(hash, content))
      assert.deepStrictEqual(readdirSync(join(dir, "p", hash.slice(0, 2))), [hash])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("refuses a hash that does not match, a tampered file and a name that is no hash", () => {
    const dir = tempDir("rl-payload-")
    try {
      const store = filesystemPayloadStore(dir)
      const wrong = store.put(sha("other"), "content")
      assert.strictEqual(typeof wrong === "object" && wrong.reason, "Integrity")

      const hash = sha("original")
      assert.isUndefined(store.put(hash, "original"))
      writeFileSync(store.pathOf(hash), "tampered")
      const read = store.get(hash)
      assert.strictEqual(typeof read === "object" && read.reason, "Integrity")
      const again = store.put(hash, "original")
      assert.strictEqual(again?.reason, "Integrity", "a tampered file is reported, not silently replaced")
      assert.strictEqual(readFileSync(store.pathOf(hash), "utf8"), "tampered")

      for (const name of ["../../etc/passwd", "ABC", sha("x").toUpperCase()]) {
        const bad = store.get(name)
        assert.strictEqual(typeof bad === "object" && bad.reason, "InvalidHash")
      }
      const missing = store.get(sha("never stored"))
      assert.strictEqual(typeof missing === "object" && missing.reason, "NotFound")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it.effect("the recorder stores every source row by its source_data_hash before recording it", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-payload-")
      try {
        const store = filesystemPayloadStore(join(dir, "payloads"))
        const rows = yield* Effect.scoped(Effect.gen(function*() {
          const rec = yield* Recorder
          const runId = yield* rec.beginRun({ settings: {} })
          yield* Trail.registerNode({ runId, nodeId: "src" as NodeId, pluginName: "csv", nodeType: "source", name: "source", config: {}, sequence: 0 })
          for (const [i, data] of [{ id: 1 }, { id: 2, text: "ß ✓" }, { id: 1 }].entries()) {
            yield* Trail.createRow({ runId, sourceNodeId: "src" as NodeId, rowIndex: i, data })
          }
          yield* rec.completeRun(runId, { status: "completed" })
          const sql = yield* SqlClient.SqlClient
          return yield* sql<{ source_data_hash: string; source_data_json: string }>`SELECT * FROM rows ORDER BY row_index`
        }).pipe(Effect.provide(SqliteLandscape(join(dir, "audit.db"), { payloadStore: store }))))
        assert.strictEqual(rows.length, 3)
        for (const r of rows) {
          const file = store.pathOf(r.source_data_hash)
          assert.strictEqual(readFileSync(file, "utf8"), r.source_data_json)
          assert.strictEqual(sha(readFileSync(file, "utf8")), r.source_data_hash)
        }
        // Two identical rows share one file.
        const files = readdirSync(join(dir, "payloads")).flatMap((d) => readdirSync(join(dir, "payloads", d)))
        assert.strictEqual(files.length, 2)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("a payload that cannot be written fails the flush, and its row is not recorded", () =>
    Effect.gen(function*() {
      const dir = tempDir("rl-payload-")
      try {
        const base = join(dir, "payloads")
        mkdirSync(base)
        const store = filesystemPayloadStore(base)
        const data = { id: 7 }
        const hash = sha(JSON.stringify(data))
        // The two-digit folder of this payload is a file: the write fails whoever runs it.
        writeFileSync(join(base, hash.slice(0, 2)), "in the way")
        const { flushed, count } = yield* Effect.scoped(Effect.gen(function*() {
          const rec = yield* Recorder
          const runId = yield* rec.beginRun({ settings: {} })
          yield* Trail.registerNode({ runId, nodeId: "src" as NodeId, pluginName: "csv", nodeType: "source", name: "source", config: {}, sequence: 0 })
          yield* Trail.createRow({ runId, sourceNodeId: "src" as NodeId, rowIndex: 0, data })
          const flushed = yield* Effect.exit(rec.flush)
          const sql = yield* SqlClient.SqlClient
          const [count] = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM rows`
          return { flushed, count: count!.n }
        }).pipe(Effect.provide(SqliteLandscape(join(dir, "audit.db"), { payloadStore: store }))))
        assert.isTrue(Exit.isFailure(flushed))
        if (Exit.isFailure(flushed) && flushed.cause._tag === "Fail") assert.include(flushed.cause.error.message, "storing the payload of row")
        assert.strictEqual(count, 0)
        assert.isFalse(existsSync(store.pathOf(hash)))
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))
})

describe("putAsync (external call bodies)", () => {
  it.live("stores under the hash, keeps a file already there, and refuses one that was changed", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const store = filesystemPayloadStore(join(dir, "p"))
      const body = "{\"a\":1}"
      const hash = sha(body)
      assert.isUndefined(yield* Effect.promise(() => store.putAsync(hash, body)))
      assert.strictEqual(readFileSync(store.pathOf(hash), "utf8"), body)
      assert.isUndefined(yield* Effect.promise(() => store.putAsync(hash, body)))
      assert.deepStrictEqual(readdirSync(join(dir, "p", hash.slice(0, 2))), [hash])
      const wrong = yield* Effect.promise(() => store.putAsync(sha("other"), body))
      assert.strictEqual(wrong?.reason, "Integrity")
      // A file changed behind the store's back is found by a fresh store, not replaced.
      writeFileSync(store.pathOf(hash), "tampered")
      const again = yield* Effect.promise(() => filesystemPayloadStore(join(dir, "p")).putAsync(hash, body))
      assert.strictEqual(again?.reason, "Integrity")
      assert.strictEqual(readFileSync(store.pathOf(hash), "utf8"), "tampered")
    }))
})
