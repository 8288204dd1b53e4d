import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { createHmac } from "node:crypto"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { canonicalJsonUnsafe, sha256Hex } from "../../src/core/canonical.js"
import type { NodeId } from "../../src/core/ids.js"
import { CHAIN_SEED, signingKeyFromEnv } from "../../src/services/signing.js"
import { type VerificationFailure, verifyExport } from "../../src/landscape/verify.js"
import { exportRun } from "../../src/pipeline/orchestrator/export.js"
import { Recorder } from "../../src/services/recorder.js"
import { MemoryLandscape } from "../support/landscape.js"
import * as Trail from "../support/trail.js"
import { tempDir } from "../support/pipeline.js"

const KEY = "k3y-for-tests"
const SRC = "source_1" as NodeId
const SINK = "sink_1" as NodeId

/** A small finished run, exported signed as a JSON array; returns the file. */
const signedExport = (name = "trail.json", rows = 4) =>
  Effect.gen(function*() {
    const rec = yield* Recorder
    const runId = yield* rec.beginRun({ settings: { s: 1 } })
    yield* Trail.registerNode({ runId, nodeId: SRC, pluginName: "csv", nodeType: "source", name: "source", config: {}, sequence: 0 })
    yield* Trail.registerNode({ runId, nodeId: SINK, pluginName: "csv", nodeType: "sink", name: "out", config: {}, sequence: 1 })
    for (let i = 0; i < rows; i++) {
      const rowId = yield* Trail.createRow({ runId, sourceNodeId: SRC, rowIndex: i, data: { id: i, text: "héllo ✓" } })
      const tokenId = yield* Trail.createToken({ runId, rowId })
      yield* Trail.recordOutcome({ runId, tokenId, outcome: "COMPLETED", sinkName: "out" })
    }
    yield* rec.completeRun(runId, { status: "completed" })
    const path = join(tempDir(), name)
    yield* exportRun({ run: runId, format: "json", out: path, sign: true, signingKey: KEY })
    return path
  })

type Rec = Record<string, unknown>
const load = (path: string): Array<Rec> => JSON.parse(readFileSync(path, "utf8")) as Array<Rec>
const save = (path: string, records: ReadonlyArray<Rec>) => writeFileSync(path, JSON.stringify(records))

const failure = (path: string, key = KEY) =>
  Effect.map(Effect.either(verifyExport(path, { signingKey: key })), (r) => {
    if (Either.isRight(r)) throw new Error("expected the export to fail verification")
    const e = r.left
    if (e._tag !== "ExportVerificationError") throw new Error(`unexpected ${e._tag}`)
    return e
  })

const expectFailure = (path: string, reason: VerificationFailure, position: number | undefined, text: RegExp) =>
  Effect.gen(function*() {
    const e = yield* failure(path)
    assert.strictEqual(e.reason, reason, e.message)
    assert.strictEqual(e.position, position, e.message)
    assert.match(e.message, text)
  })

describe("signing", () => {
  it.scoped("signs every record and chains the signatures into the manifest exactly as documented", () =>
    Effect.gen(function*() {
      const path = yield* signedExport()
      const records = load(path)
      const manifest = records[records.length - 1]!
      let chain = sha256Hex("")
      assert.strictEqual(CHAIN_SEED, chain)
      for (const r of records.slice(0, -1)) {
        const { signature, ...rest } = r
        assert.strictEqual(signature, createHmac("sha256", KEY).update(canonicalJsonUnsafe(rest)).digest("hex"))
        chain = sha256Hex(chain + String(signature))
      }
      const { signature, ...body } = manifest
      assert.deepStrictEqual(Object.keys(body).sort(), [
        "canonical_version", "chain_hash", "exported_at", "hash_algorithm", "record_count", "record_type", "run_id", "signature_algorithm"
      ])
      assert.strictEqual(body.chain_hash, chain)
      assert.strictEqual(body.record_count, records.length - 1)
      assert.strictEqual(body.hash_algorithm, "sha256")
      assert.strictEqual(body.signature_algorithm, "hmac-sha256")
      assert.strictEqual(body.canonical_version, "sha256-rfc8785-v1")
      assert.strictEqual(signature, createHmac("sha256", KEY).update(canonicalJsonUnsafe(body)).digest("hex"))
      const ok = yield* verifyExport(path, { signingKey: KEY })
      assert.strictEqual(ok.record_count, records.length - 1)
      assert.strictEqual(ok.chain_hash, chain)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("verifies JSON Lines, and the same values whatever their JSON text", () =>
    Effect.gen(function*() {
      const path = yield* signedExport("trail.jsonl")
      const text = readFileSync(path, "utf8")
      assert.isFalse(text.startsWith("["))
      yield* verifyExport(path, { signingKey: KEY })
      // Re-indented, keys re-ordered: still the same values, still valid.
      const pretty = join(tempDir(), "pretty.json")
      const records = text.trim().split("\n").map((l) => JSON.parse(l) as Rec)
      writeFileSync(pretty, JSON.stringify(records.map((r) => Object.fromEntries(Object.entries(r).reverse())), null, 2))
      yield* verifyExport(pretty, { signingKey: KEY })
    }).pipe(Effect.provide(MemoryLandscape())))

  it("reads the key from RUNLEDGER_SIGNING_KEY, then ELSPETH_SIGNING_KEY", () => {
    assert.strictEqual(signingKeyFromEnv({ RUNLEDGER_SIGNING_KEY: "a", ELSPETH_SIGNING_KEY: "b" }), "a")
    assert.strictEqual(signingKeyFromEnv({ RUNLEDGER_SIGNING_KEY: "", ELSPETH_SIGNING_KEY: "b" }), "b")
    assert.isUndefined(signingKeyFromEnv({}))
  })
})

describe("tampering", () => {
  it.scoped("a flipped byte is a modified record", () =>
    Effect.gen(function*() {
      const path = yield* signedExport()
      const bytes = readFileSync(path)
      const text = bytes.toString("utf8")
      const at = text.indexOf("\"source_data_hash\":\"") + "\"source_data_hash\":\"".length
      bytes[at] = bytes[at] === 0x61 ? 0x62 : 0x61
      writeFileSync(path, bytes)
      const index = load(path).findIndex((r) => r.record_type === "row")
      yield* expectFailure(path, "modified", index, /modified — its signature does not match/)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("a dropped record is missing", () =>
    Effect.gen(function*() {
      const path = yield* signedExport()
      const records = load(path)
      save(path, [...records.slice(0, 3), ...records.slice(4)])
      yield* expectFailure(path, "missing", 3, /seq 4.*missing — the record with seq 3/)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("two swapped records are reordered", () =>
    Effect.gen(function*() {
      const path = yield* signedExport()
      const records = load(path)
      ;[records[2], records[5]] = [records[5]!, records[2]!]
      save(path, records)
      yield* expectFailure(path, "reordered", 2, /seq 5.*reordered — it comes before seq 2/)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("an appended record is extra, after the manifest or before it", () =>
    Effect.gen(function*() {
      const path = yield* signedExport()
      const records = load(path)
      save(path, [...records, records[1]!])
      yield* expectFailure(path, "extra", records.length, /extra — a record after the manifest/)
      save(path, [...records.slice(0, -1), records[1]!, records[records.length - 1]!])
      yield* expectFailure(path, "extra", records.length - 1, /extra — a second copy of seq 1/)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("a changed manifest is a bad manifest; a dropped last record is a wrong count", () =>
    Effect.gen(function*() {
      const path = yield* signedExport()
      const records = load(path)
      const last = records.length - 1
      save(path, [...records.slice(0, -1), { ...records[last]!, record_count: 3 }])
      yield* expectFailure(path, "bad_manifest", last, /bad manifest .* its signature does not match/)
      save(path, records.slice(0, -1))
      yield* expectFailure(path, "bad_manifest", undefined, /no manifest record/)
      save(path, [...records.slice(0, -2), records[last]!])
      yield* expectFailure(path, "wrong_count", last - 1, /wrong count — the manifest says \d+ records, the export holds \d+ \(the last 1 are missing\)/)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("a manifest taken from the export of another run does not match the chain", () =>
    Effect.gen(function*() {
      const path = yield* signedExport()
      const other = yield* signedExport()
      const records = load(path)
      const foreign = load(other)
      save(path, [...records.slice(0, -1), foreign[foreign.length - 1]!])
      yield* expectFailure(path, "bad_manifest", records.length - 1, /chain hash does not match/)
    }).pipe(Effect.provide(MemoryLandscape())))

  it.scoped("the wrong key, an unsigned export and a truncated file all fail", () =>
    Effect.gen(function*() {
      const path = yield* signedExport()
      const wrongKey = yield* failure(path, "another key")
      assert.strictEqual(wrongKey.reason, "modified")
      assert.match(wrongKey.message, /signed with another key/)

      const records = load(path)
      save(path, records.slice(0, -1).map(({ signature: _s, ...r }) => r))
      yield* expectFailure(path, "unsigned", 0, /not signed/)

      const text = readFileSync(path, "utf8")
      writeFileSync(path, text.slice(0, text.length - 40))
      const truncated = yield* failure(path)
      assert.strictEqual(truncated.reason, "unreadable")
    }).pipe(Effect.provide(MemoryLandscape())))
})
