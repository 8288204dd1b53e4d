/**
 * Branded identifiers of the audit trail, all made by one generator.
 *
 * Random ids are UUIDv7-shaped (48-bit millisecond time, then randomness) with a
 * readable prefix (`run_`, `row_`, `tok_`, …), so they sort by creation time and never
 * collide across processes or resumed runs. Node ids are not random: the graph derives
 * them from a hash of the node's configuration (see `nodeIdFromConfig`).
 */
import { randomBytes } from "node:crypto"
import type { Brand } from "effect"

export type RunId = string & Brand.Brand<"RunId">
export type NodeId = string & Brand.Brand<"NodeId">
export type EdgeId = string & Brand.Brand<"EdgeId">
export type RowId = string & Brand.Brand<"RowId">
export type TokenId = string & Brand.Brand<"TokenId">
export type StateId = string & Brand.Brand<"StateId">
export type OutcomeId = string & Brand.Brand<"OutcomeId">
export type EventId = string & Brand.Brand<"EventId">
export type BatchId = string & Brand.Brand<"BatchId">
export type ArtifactId = string & Brand.Brand<"ArtifactId">
export type ErrorId = string & Brand.Brand<"ErrorId">
export type GroupId = string & Brand.Brand<"GroupId">
export type CheckpointId = string & Brand.Brand<"CheckpointId">

const PREFIX = {
  run: "run",
  edge: "edg",
  row: "row",
  token: "tok",
  state: "st",
  outcome: "out",
  event: "evt",
  batch: "bat",
  artifact: "art",
  error: "err",
  group: "grp",
  checkpoint: "chk",
  operation: "op",
  call: "call"
} as const

export type IdKind = keyof typeof PREFIX

const POOL_BYTES = 8 * 1024
let poolHex = ""
let poolOffset = 0
let lastMs = 0
let sequence = 0
let timeHex = ""

/** 32 hex digits: 12 of time, 4 of per-millisecond sequence, 16 random. */
const uuid7Hex = (): string => {
  const now = Date.now()
  if (now === lastMs) {
    sequence = (sequence + 1) & 0xffff
  } else {
    lastMs = now
    sequence = 0
    timeHex = now.toString(16).padStart(12, "0")
  }
  if (poolOffset + 16 > poolHex.length) {
    poolHex = randomBytes(POOL_BYTES).toString("hex")
    poolOffset = 0
  }
  const random = poolHex.slice(poolOffset, poolOffset + 16)
  poolOffset += 16
  return timeHex + (sequence + 0x10000).toString(16).slice(1) + random
}

/** A fresh id of the given kind, e.g. `newId("token")` → `tok_0193a0…`. */
export const newId = <K extends IdKind>(kind: K): string => `${PREFIX[kind]}_${uuid7Hex()}`

export const newRunId = (): RunId => newId("run") as RunId
export const newRowId = (): RowId => newId("row") as RowId
export const newTokenId = (): TokenId => newId("token") as TokenId
export const newStateId = (): StateId => newId("state") as StateId
export const newOutcomeId = (): OutcomeId => newId("outcome") as OutcomeId
export const newEventId = (): EventId => newId("event") as EventId
export const newBatchId = (): BatchId => newId("batch") as BatchId
export const newArtifactId = (): ArtifactId => newId("artifact") as ArtifactId
export const newErrorId = (): ErrorId => newId("error") as ErrorId
export const newGroupId = (): GroupId => newId("group") as GroupId
export const newEdgeId = (): EdgeId => newId("edge") as EdgeId
export const newCheckpointId = (): CheckpointId => newId("checkpoint") as CheckpointId

/** A node id derived from its kind, name and configuration hash: stable across runs. */
export const nodeIdFromConfig = (nodeType: string, name: string, configHash: string): NodeId =>
  `${nodeType}_${name.replace(/[^A-Za-z0-9_]/g, "_").slice(0, 40)}_${configHash.slice(0, 12)}` as NodeId
