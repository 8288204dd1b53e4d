/**
 * Audit trails for tests: one call per record, built the way the engine builds them
 * and handed to the Recorder with `append` (timestamps from `Recorder.now`). Values
 * that have no canonical JSON are a defect here: these helpers are for well-formed
 * trails; what the Recorder refuses is tested through `append` itself.
 */
import { Effect } from "effect"
import { canonicalJsonUnsafe, sha256Hex } from "../../src/core/canonical.js"
import {
  type BatchId,
  type EdgeId,
  newBatchId,
  newEdgeId,
  newErrorId,
  newEventId,
  newOutcomeId,
  newRowId,
  newStateId,
  newTokenId,
  type NodeId,
  type RowId,
  type RunId,
  type StateId,
  type TokenId
} from "../../src/core/ids.js"
import { Recorder } from "../../src/services/recorder.js"
import {
  type AuditRecord,
  type BatchStatus,
  type EdgeMode,
  isTerminalOutcome,
  type NodeType,
  type Outcome,
  type TriggerType
} from "../../src/services/records.js"

const append = (records: ReadonlyArray<AuditRecord>) => Effect.flatMap(Recorder, (rec) => rec.append(records))
const now = Effect.flatMap(Recorder, (rec) => rec.now)
const jsonOrNull = (value: unknown): string | null => (value === undefined ? null : canonicalJsonUnsafe(value))

export const registerNode = (input: {
  readonly runId: RunId
  readonly nodeId: NodeId
  readonly pluginName: string
  readonly nodeType: NodeType
  readonly name: string
  readonly config: unknown
  readonly sequence: number
}) =>
  Effect.suspend(() => {
    const configJson = canonicalJsonUnsafe(input.config)
    return append([{
      _tag: "Node",
      run_id: input.runId,
      node_id: input.nodeId,
      plugin_name: input.pluginName,
      node_type: input.nodeType,
      name: input.name,
      config_hash: sha256Hex(configJson),
      config_json: configJson,
      sequence: input.sequence
    }])
  })

export const registerEdge = (input: {
  readonly runId: RunId
  readonly fromNodeId: NodeId
  readonly toNodeId: NodeId
  readonly label: string
  readonly mode: EdgeMode
}) =>
  Effect.suspend(() => {
    const edgeId = newEdgeId()
    return Effect.as(
      append([{
        _tag: "Edge",
        edge_id: edgeId,
        run_id: input.runId,
        from_node_id: input.fromNodeId,
        to_node_id: input.toNodeId,
        label: input.label,
        mode: input.mode
      }]),
      edgeId as EdgeId
    )
  })

export const createRow = (input: {
  readonly runId: RunId
  readonly sourceNodeId: NodeId
  readonly rowIndex: number
  readonly data: unknown
}) =>
  Effect.gen(function*() {
    const json = canonicalJsonUnsafe(input.data)
    const rowId = newRowId()
    yield* append([{
      _tag: "Row",
      row_id: rowId,
      run_id: input.runId,
      source_node_id: input.sourceNodeId,
      row_index: input.rowIndex,
      source_data_hash: sha256Hex(json),
      source_data_json: json,
      created_at: yield* now
    }])
    return rowId as RowId
  })

export const createToken = (input: {
  readonly runId: RunId
  readonly rowId: RowId
  readonly parents?: ReadonlyArray<TokenId>
  readonly forkGroupId?: string
  readonly branchName?: string
}) =>
  Effect.gen(function*() {
    const tokenId = newTokenId()
    const records: Array<AuditRecord> = [{
      _tag: "Token",
      token_id: tokenId,
      run_id: input.runId,
      row_id: input.rowId,
      fork_group_id: input.forkGroupId ?? null,
      join_group_id: null,
      expand_group_id: null,
      branch_name: input.branchName ?? null,
      created_at: yield* now
    }]
    ;(input.parents ?? []).forEach((parent, ordinal) =>
      records.push({ _tag: "TokenParent", token_id: tokenId, parent_token_id: parent, ordinal })
    )
    yield* append(records)
    return tokenId as TokenId
  })

export const beginNodeState = (input: {
  readonly runId: RunId
  readonly tokenId: TokenId
  readonly nodeId: NodeId
  readonly stepIndex: number
  readonly input: unknown
}) =>
  Effect.gen(function*() {
    const stateId = newStateId()
    yield* append([{
      _tag: "NodeState",
      state_id: stateId,
      token_id: input.tokenId,
      run_id: input.runId,
      node_id: input.nodeId,
      step_index: input.stepIndex,
      attempt: 1,
      status: "open",
      input_hash: sha256Hex(canonicalJsonUnsafe(input.input)),
      output_hash: null,
      duration_ms: null,
      error_json: null,
      started_at: yield* now,
      completed_at: null
    }])
    return stateId as StateId
  })

export const completeNodeState = (input: {
  readonly stateId: StateId
  readonly status: "completed" | "failed"
  readonly output?: unknown
  readonly error?: unknown
  readonly durationMs: number
}) =>
  Effect.gen(function*() {
    yield* append([{
      _tag: "NodeStateCompletion",
      state_id: input.stateId,
      status: input.status,
      output_hash: input.output === undefined ? null : sha256Hex(canonicalJsonUnsafe(input.output)),
      duration_ms: input.durationMs,
      error_json: jsonOrNull(input.error),
      completed_at: yield* now
    }])
  })

export const recordRoutingEvent = (input: {
  readonly stateId: StateId
  readonly edgeId: EdgeId
  readonly mode: EdgeMode
  readonly reason?: unknown
}) =>
  Effect.gen(function*() {
    yield* append([{
      _tag: "RoutingEvent",
      event_id: newEventId(),
      state_id: input.stateId,
      edge_id: input.edgeId,
      routing_group_id: newEventId(),
      ordinal: 0,
      mode: input.mode,
      reason_json: jsonOrNull(input.reason),
      created_at: yield* now
    }])
  })

export const recordOutcome = (input: {
  readonly runId: RunId
  readonly tokenId: TokenId
  readonly outcome: Outcome
  readonly sinkName?: string
  readonly batchId?: BatchId
  readonly error?: unknown
}) =>
  Effect.gen(function*() {
    yield* append([{
      _tag: "Outcome",
      outcome_id: newOutcomeId(),
      run_id: input.runId,
      token_id: input.tokenId,
      outcome: input.outcome,
      is_terminal: isTerminalOutcome(input.outcome) ? 1 : 0,
      sink_name: input.sinkName ?? null,
      batch_id: input.batchId ?? null,
      fork_group_id: null,
      join_group_id: null,
      expand_group_id: null,
      error_hash: input.error === undefined ? null : sha256Hex(canonicalJsonUnsafe(input.error)),
      context_json: null,
      recorded_at: yield* now
    }])
  })

export const createBatch = (input: { readonly runId: RunId; readonly aggregationNodeId: NodeId }) =>
  Effect.gen(function*() {
    const batchId = newBatchId()
    yield* append([{
      _tag: "Batch",
      batch_id: batchId,
      run_id: input.runId,
      aggregation_node_id: input.aggregationNodeId,
      trigger_type: null,
      trigger_reason: null,
      status: "draft",
      attempt: 1,
      error_json: null,
      created_at: yield* now,
      completed_at: null
    }])
    return batchId as BatchId
  })

export const updateBatch = (input: {
  readonly batchId: BatchId
  readonly status: BatchStatus
  readonly triggerType?: TriggerType
}) =>
  Effect.gen(function*() {
    const done = input.status === "completed" || input.status === "failed"
    yield* append([{
      _tag: "BatchUpdate",
      batch_id: input.batchId,
      status: input.status,
      trigger_type: input.triggerType ?? null,
      trigger_reason: null,
      error_json: null,
      completed_at: done ? yield* now : null
    }])
  })

export const addBatchMember = (input: { readonly batchId: BatchId; readonly tokenId: TokenId; readonly ordinal: number }) =>
  append([{ _tag: "BatchMember", batch_id: input.batchId, token_id: input.tokenId, ordinal: input.ordinal }])

export const addBatchOutput = (input: { readonly batchId: BatchId; readonly tokenId: TokenId; readonly ordinal: number }) =>
  append([{ _tag: "BatchOutput", batch_id: input.batchId, token_id: input.tokenId, ordinal: input.ordinal }])

export const recordValidationError = (input: {
  readonly runId: RunId
  readonly nodeId: NodeId
  readonly rowId?: RowId
  readonly row: unknown
  readonly error: string
  readonly schemaMode: string
  readonly destination: string
}) =>
  Effect.gen(function*() {
    const json = canonicalJsonUnsafe(input.row)
    yield* append([{
      _tag: "ValidationError",
      error_id: newErrorId(),
      run_id: input.runId,
      node_id: input.nodeId,
      row_id: input.rowId ?? null,
      row_hash: sha256Hex(json),
      row_json: json,
      error: input.error,
      schema_mode: input.schemaMode,
      destination: input.destination,
      created_at: yield* now
    }])
  })

export const recordTransformError = (input: {
  readonly runId: RunId
  readonly tokenId: TokenId
  readonly nodeId: NodeId
  readonly stateId?: StateId
  readonly row: unknown
  readonly details: unknown
  readonly destination: string
}) =>
  Effect.gen(function*() {
    const json = canonicalJsonUnsafe(input.row)
    yield* append([{
      _tag: "TransformError",
      error_id: newErrorId(),
      run_id: input.runId,
      token_id: input.tokenId,
      node_id: input.nodeId,
      state_id: input.stateId ?? null,
      row_hash: sha256Hex(json),
      row_json: json,
      error_details_json: canonicalJsonUnsafe(input.details),
      destination: input.destination,
      created_at: yield* now
    }])
  })
