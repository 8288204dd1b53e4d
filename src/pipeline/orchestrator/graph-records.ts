/**
 * The run's graph as audit records, registered before any row: one node record per
 * node, one edge record per edge, and the edge ids the processor records routing
 * events along (keyed `<from node id>|<label>`).
 */
import { canonicalJsonUnsafe, sha256Hex } from "../../core/canonical.js"
import { type EdgeId, newEdgeId, type RunId } from "../../core/ids.js"
import type { AuditRecord } from "../../services/records.js"
import type { PipelinePlan } from "../build.js"
import { redactSecrets } from "../secrets.js"

export const graphRecords = (
  plan: PipelinePlan,
  runId: RunId
): { readonly records: Array<AuditRecord>; readonly edgeIds: ReadonlyMap<string, EdgeId> } => {
  const edgeIds = new Map<string, EdgeId>()
  const records: Array<AuditRecord> = []
  for (const n of plan.graph.nodes) {
    const configJson = canonicalJsonUnsafe(redactSecrets(n.config))
    records.push({
      _tag: "Node",
      run_id: runId,
      node_id: n.nodeId,
      plugin_name: n.plugin,
      node_type: n.nodeType,
      name: n.name,
      config_hash: sha256Hex(configJson),
      config_json: configJson,
      sequence: n.sequence
    })
  }
  for (const e of plan.graph.edges) {
    const edgeId = newEdgeId()
    edgeIds.set(`${e.from}|${e.label}`, edgeId)
    records.push({ _tag: "Edge", edge_id: edgeId, run_id: runId, from_node_id: e.from, to_node_id: e.to, label: e.label, mode: e.mode })
  }
  return { records, edgeIds }
}
