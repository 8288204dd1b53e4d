/**
 * The `landscape:` and `payload_store:` sections through `parseSettings`: every ELSPETH
 * key is accepted or an error naming it (never a warning that drops it), the checks
 * between keys, the warnings worth giving, and what the sections ask of the Landscape.
 */
import { describe, expect, it } from "vitest"
import { Effect, Either } from "effect"
import { INFORMATIONAL_KEYS, landscapeRequest } from "../../src/pipeline/landscape-settings.js"
import { parseSettings } from "../../src/pipeline/settings.js"

const BASE = "source: {plugin: csv}\nsinks: {out: {plugin: csv}}\ndefault_sink: out\n"
const load = (extra: string) => Effect.runSync(Effect.either(parseSettings("s.yaml", BASE + extra, {})))
const loaded = (extra: string) => {
  const r = load(extra)
  if (Either.isLeft(r)) throw new Error(r.left.text)
  return r.right
}
const errorText = (extra: string) => {
  const r = load(extra)
  if (Either.isRight(r)) throw new Error("expected an error")
  return r.left.text
}

describe("landscape and payload_store settings", () => {
  it("accepts every key of ELSPETH's LandscapeSettings and PayloadStoreSettings", () => {
    const s = loaded(`landscape:
  enabled: true
  backend: sqlcipher
  url: sqlite:///runs/audit.db
  encryption_key_env: MY_AUDIT_KEY
  export: {enabled: false, sink: out, format: json, sign: false}
  dump_to_jsonl: true
  dump_to_jsonl_path: runs/j.jsonl
  dump_to_jsonl_fail_on_error: true
  dump_to_jsonl_include_payloads: true
  dump_to_jsonl_payload_base_path: null
payload_store:
  backend: filesystem
  base_path: payloads
  retention_days: 7
`)
    expect(landscapeRequest(s.settings)).toEqual({
      encrypted: true,
      keyEnv: "MY_AUDIT_KEY",
      journal: { path: "runs/j.jsonl", failOnError: true, payloadBasePath: "payloads" },
      payloadStore: { basePath: "payloads" }
    })
    // Encrypted Landscape, plaintext copies: said, not refused.
    expect(s.warnings.join("\n")).toContain("the journal is plaintext")
    expect(s.warnings.join("\n")).toContain("payload files are plaintext")
  })

  it("defaults: plaintext, no journal, no payload store", () => {
    const s = loaded("landscape: {url: 'sqlite:///a.db'}\n")
    expect(landscapeRequest(s.settings)).toEqual({ encrypted: false, keyEnv: undefined, journal: undefined, payloadStore: undefined })
    expect(s.warnings).toEqual([])
    const journal = landscapeRequest(loaded("landscape: {dump_to_jsonl: true}\npayload_store: {}\n").settings)
    expect(journal.journal).toEqual({ path: undefined, failOnError: false, payloadBasePath: undefined })
    expect(journal.payloadStore).toEqual({ basePath: ".elspeth/payloads" })
  })

  it.each([
    ["landscape: {enabled: false}\n", "s.yaml: landscape.enabled: runledger always records"],
    ["landscape: {backend: postgresql, url: 'postgresql://u@h/db'}\n", "s.yaml: landscape.backend: 'postgresql' is not supported"],
    ["landscape: {backend: mysql}\n", "s.yaml: landscape.backend: expected 'sqlite' or 'sqlcipher', got 'mysql'"],
    ["landscape: {encryption_key_env: MY_KEY}\n", "s.yaml: landscape.encryption_key_env: names the passphrase of an encrypted Landscape, but landscape.backend is not set (sqlite)"],
    ["landscape: {backend: sqlite, encryption_key_env: MY_KEY}\n", "landscape.backend is sqlite: the Landscape would be written in plaintext"],
    ["landscape: {backend: sqlcipher, encryption_key_env: 'not a name'}\n", "s.yaml: landscape.encryption_key_env: expected an environment variable name"],
    ["landscape: {backend: sqlcipher, url: ':memory:'}\n", "s.yaml: landscape.url: backend: sqlcipher encrypts a file"],
    ["payload_store: {backend: azure_blob}\n", "s.yaml: payload_store.backend: 'azure_blob' is not supported"],
    ["payload_store: {retention_days: 0}\n", "s.yaml: payload_store.retention_days"],
    ["landscape: {dump_to_jsonl: true, dump_to_jsonl_include_payloads: true}\n", "s.yaml: landscape.dump_to_jsonl_include_payloads: inlines payloads from a payload store, and none is configured"],
    ["landscape: {dump_to_jsonl: yes please}\n", "s.yaml: landscape.dump_to_jsonl"],
    ["landscape: {dump_to_json: true}\n", "did you mean 'dump_to_jsonl'"],
    ["payload_store: {base: x}\n", "s.yaml: payload_store.base: unknown key"]
  ])("%s is an error naming the key", (extra, expected) => {
    expect(errorText(extra)).toContain(expected)
  })

  it("journal keys without dump_to_jsonl are accepted with a warning that nothing is journalled", () => {
    const s = loaded("landscape: {dump_to_jsonl_path: j.jsonl, dump_to_jsonl_fail_on_error: true}\n")
    expect(s.warnings).toEqual([
      "landscape.dump_to_jsonl_path, landscape.dump_to_jsonl_fail_on_error set, but landscape.dump_to_jsonl is not true: no journal is written"
    ])
    expect(landscapeRequest(s.settings).journal).toBeUndefined()
  })

  it("the informational keys are accepted and change nothing", () => {
    expect(INFORMATIONAL_KEYS.map(([k]) => k)).toEqual(["landscape.enabled", "payload_store.retention_days"])
    const s = loaded("landscape: {enabled: true}\npayload_store: {base_path: p, retention_days: 30}\n")
    expect(s.warnings).toEqual([])
    expect(landscapeRequest(s.settings)).toEqual(landscapeRequest(loaded("payload_store: {base_path: p}\n").settings))
  })
})
