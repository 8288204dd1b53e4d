/**
 * The execution graph: nodes with ids derived from a hash of their configuration, and
 * labelled edges. Registered in the Landscape at the start of every run; routing events
 * point at these edges.
 */
import { stableHashUnsafe } from "../core/canonical.js"
import { type NodeId, nodeIdFromConfig } from "../core/ids.js"
import type { EdgeMode, NodeType } from "../services/records.js"

export interface GraphNode {
  readonly nodeId: NodeId
  readonly nodeType: NodeType
  readonly plugin: string
  readonly name: string
  readonly config: unknown
  readonly sequence: number
}

export interface GraphEdge {
  readonly from: NodeId
  readonly to: NodeId
  readonly label: string
  readonly mode: EdgeMode
}

export interface Graph {
  readonly nodes: ReadonlyArray<GraphNode>
  readonly edges: ReadonlyArray<GraphEdge>
  /** Hash of the whole topology (nodes and edges), stored with checkpoints. */
  readonly topologyHash: string
}

export class GraphBuilder {
  private readonly nodes: Array<GraphNode> = []
  private readonly edges: Array<GraphEdge> = []

  /** Adds a node; its id hashes the kind, name, position and configuration. */
  node(nodeType: NodeType, plugin: string, name: string, config: unknown): NodeId {
    const sequence = this.nodes.length
    const nodeId = nodeIdFromConfig(nodeType, name, stableHashUnsafe({ nodeType, plugin, name, sequence, config }))
    this.nodes.push({ nodeId, nodeType, plugin, name, config, sequence })
    return nodeId
  }

  edge(from: NodeId, to: NodeId, label: string, mode: EdgeMode): void {
    if (!this.edges.some((e) => e.from === from && e.label === label)) this.edges.push({ from, to, label, mode })
  }

  build(): Graph {
    return {
      nodes: this.nodes,
      edges: this.edges,
      topologyHash: stableHashUnsafe({
        nodes: this.nodes.map((n) => n.nodeId),
        edges: this.edges.map((e) => [e.from, e.to, e.label, e.mode])
      })
    }
  }
}

/** The first cycle found, as a list of node ids, or undefined. */
export const findCycle = (graph: Graph): ReadonlyArray<NodeId> | undefined => {
  const out = new Map<NodeId, Array<NodeId>>()
  for (const e of graph.edges) out.set(e.from, [...(out.get(e.from) ?? []), e.to])
  const state = new Map<NodeId, 1 | 2>()
  const stack: Array<NodeId> = []
  const visit = (n: NodeId): ReadonlyArray<NodeId> | undefined => {
    const s = state.get(n)
    if (s === 2) return undefined
    if (s === 1) return [...stack.slice(stack.indexOf(n)), n]
    state.set(n, 1)
    stack.push(n)
    for (const next of out.get(n) ?? []) {
      const cycle = visit(next)
      if (cycle !== undefined) return cycle
    }
    stack.pop()
    state.set(n, 2)
    return undefined
  }
  for (const node of graph.nodes) {
    const cycle = visit(node.nodeId)
    if (cycle !== undefined) return cycle
  }
  return undefined
}

/** Sink nodes that no path from the source reaches. */
export const unreachableSinks = (graph: Graph, sourceId: NodeId): ReadonlyArray<GraphNode> => {
  const out = new Map<NodeId, Array<NodeId>>()
  for (const e of graph.edges) out.set(e.from, [...(out.get(e.from) ?? []), e.to])
  const seen = new Set<NodeId>([sourceId])
  const queue = [sourceId]
  while (queue.length > 0) {
    const n = queue.shift()!
    for (const next of out.get(n) ?? []) {
      if (!seen.has(next)) {
        seen.add(next)
        queue.push(next)
      }
    }
  }
  return graph.nodes.filter((n) => n.nodeType === "sink" && !seen.has(n.nodeId))
}
