/**
 * The execution graph as text for people: an indented tree (`validate --graph`,
 * `run --dry-run`) or a Mermaid flowchart (`validate --graph mermaid`).
 *
 * Both read only the nodes (type, plugin, name) and the labelled edges of a Graph,
 * never how the plan builder laid them out, so any graph the builder produces renders:
 * linear chains, gate trees, forks, coalesces, several roots, even a cycle.
 */
import type { GraphEdge, GraphNode } from "../pipeline/graph.js"

/** What the views read of a Graph. */
export type GraphShape = {
  readonly nodes: ReadonlyArray<Pick<GraphNode, "nodeId" | "nodeType" | "plugin" | "name">>
  readonly edges: ReadonlyArray<GraphEdge>
}

export type GraphFormat = "text" | "mermaid"

export const GRAPH_FORMATS: ReadonlyArray<GraphFormat> = ["text", "mermaid"]

type ViewNode = GraphShape["nodes"][number]

const SIMPLE_NAME = /^[A-Za-z0-9_.:-]+$/

/** A name as typed in the settings; quoted when it holds spaces or other odd characters. */
const showName = (name: string): string => (SIMPLE_NAME.test(name) ? name : JSON.stringify(name))

/** `transform screen_notes (keyword_filter)`, `gate by_region`, `source (csv)`. */
export const nodeLabel = (node: ViewNode): string => {
  const name = node.name === node.nodeType || node.name === "" ? "" : ` ${showName(node.name)}`
  const plugin = node.plugin === node.nodeType || node.plugin === node.name || node.plugin === "" ? "" : ` (${node.plugin})`
  return `${node.nodeType}${name}${plugin}`
}

interface Index {
  readonly byId: ReadonlyMap<string, ViewNode>
  readonly outgoing: ReadonlyMap<string, ReadonlyArray<GraphEdge>>
  readonly incoming: ReadonlyMap<string, number>
}

const indexOf = (graph: GraphShape): Index => {
  const byId = new Map<string, ViewNode>(graph.nodes.map((n) => [n.nodeId, n]))
  const outgoing = new Map<string, Array<GraphEdge>>()
  const incoming = new Map<string, number>()
  for (const e of graph.edges) {
    outgoing.set(e.from, [...(outgoing.get(e.from) ?? []), e])
    incoming.set(e.to, (incoming.get(e.to) ?? 0) + 1)
  }
  return { byId, outgoing, incoming }
}

/** Sources first, then the other nodes without an incoming edge, in the graph's order. */
const rootsOf = (graph: GraphShape, index: Index): ReadonlyArray<ViewNode> => {
  const roots = graph.nodes.filter((n) => (index.incoming.get(n.nodeId) ?? 0) === 0)
  return [...roots.filter((n) => n.nodeType === "source"), ...roots.filter((n) => n.nodeType !== "source")]
}

/** Each node's longest distance from a root (edges closing a cycle are not followed). */
const depthsOf = (graph: GraphShape, index: Index): ReadonlyMap<string, number> => {
  const incoming = new Map<string, Array<string>>()
  for (const e of graph.edges) incoming.set(e.to, [...(incoming.get(e.to) ?? []), e.from])
  const depth = new Map<string, number>()
  const onPath = new Set<string>()
  const visit = (id: string): number => {
    const known = depth.get(id)
    if (known !== undefined) return known
    onPath.add(id)
    let d = 0
    for (const from of incoming.get(id) ?? []) if (!onPath.has(from) && index.byId.has(from)) d = Math.max(d, visit(from) + 1)
    onPath.delete(id)
    depth.set(id, d)
    return d
  }
  for (const n of graph.nodes) visit(n.nodeId)
  return depth
}

// ---------------------------------------------------------------------------
// Text: an indented tree

/**
 * The graph as a tree from each root. Under a node, its outgoing edges: those to leaves
 * (sinks) first, so they stay next to their node, then those that lead on, nearest
 * target first. A node reached by several edges is drawn once, below the last of the
 * edges of one parent that lead to it (the others say "see below"), or below the first
 * parent that reaches it (later ones say "see above"). A fork's branches are one line
 * each.
 */
export const graphText = (graph: GraphShape): string => {
  const index = indexOf(graph)
  const lines: Array<string> = []
  const drawn = new Set<string>()
  const onPath = new Set<string>()
  const nameOf = (id: string): string => {
    const node = index.byId.get(id)
    return node === undefined ? `unknown node ${id}` : nodeLabel(node)
  }
  const isLeaf = (id: string) => (index.outgoing.get(id) ?? []).length === 0

  const depth = depthsOf(graph, index)
  const children = (id: string): ReadonlyArray<GraphEdge> => {
    const edges = index.outgoing.get(id) ?? []
    const leaves = edges.filter((e) => isLeaf(e.to))
    const onward = edges.filter((e) => !isLeaf(e.to))
    // Nearer targets first: a node several paths meet at is drawn below the last of them.
    const targets = [...new Set(onward.map((e) => e.to))].sort((a, b) => (depth.get(a) ?? 0) - (depth.get(b) ?? 0))
    return [...leaves, ...targets.flatMap((t) => onward.filter((e) => e.to === t))]
  }

  const visit = (id: string, prefix: string) => {
    onPath.add(id)
    drawn.add(id)
    const edges = children(id)
    edges.forEach((edge, i) => {
      const last = i === edges.length - 1
      const head = `${prefix}${last ? "└─ " : "├─ "}${edge.label} [${edge.mode}] → ${nameOf(edge.to)}`
      const sameTargetFollows = edges[i + 1]?.to === edge.to
      if (isLeaf(edge.to) || !index.byId.has(edge.to)) {
        lines.push(head)
        drawn.add(edge.to)
      } else if (onPath.has(edge.to)) lines.push(`${head} (cycle: drawn above)`)
      else if (drawn.has(edge.to)) lines.push(`${head} (see above)`)
      else if (sameTargetFollows) lines.push(`${head} (see below)`)
      else {
        lines.push(head)
        visit(edge.to, prefix + (last ? "   " : "│  "))
      }
    })
    onPath.delete(id)
  }

  const drawRoot = (node: ViewNode) => {
    const connected = (index.outgoing.get(node.nodeId) ?? []).length > 0
    lines.push(connected ? nodeLabel(node) : `${nodeLabel(node)}  (not connected)`)
    visit(node.nodeId, "")
  }
  for (const root of rootsOf(graph, index)) drawRoot(root)
  // Nodes only reachable from a cycle that no root enters.
  for (const node of graph.nodes) if (!drawn.has(node.nodeId)) drawRoot(node)
  return lines.join("\n")
}

// ---------------------------------------------------------------------------
// Mermaid: a flowchart

/** Text inside a quoted Mermaid label: quotes, markup and entity starts as entity codes. */
const mermaidText = (text: string): string =>
  text
    .replace(/#/g, "#35;")
    .replace(/"/g, "#quot;")
    .replace(/</g, "#lt;")
    .replace(/>/g, "#gt;")
    .replace(/\|/g, "#124;")
    .replace(/[\r\n]+/g, " ")

const SHAPES: Readonly<Record<string, readonly [string, string]>> = {
  source: ["([", "])"],
  transform: ["[", "]"],
  aggregation: ["[[", "]]"],
  gate: ["{", "}"],
  coalesce: ["{{", "}}"],
  sink: ["[(", ")]"]
}

const ARROWS: Readonly<Record<string, string>> = { move: "-->", copy: "==>", divert: "-.->" }

/** Mermaid node ids: the node type and name, letters, digits and `_` only, unique. */
const mermaidIds = (nodes: GraphShape["nodes"]): Map<string, string> => {
  const ids = new Map<string, string>()
  const taken = new Set<string>()
  for (const n of nodes) {
    const base = `${n.nodeType}_${n.name}`.replace(/[^A-Za-z0-9_]/g, "_")
    let id = base
    for (let k = 2; taken.has(id); k++) id = `${base}_${k}`
    taken.add(id)
    ids.set(n.nodeId, id)
  }
  return ids
}

/**
 * A Mermaid `flowchart TD`: one shape per node type (source stadium, transform box,
 * aggregation subroutine, gate rhombus, coalesce hexagon, sink cylinder) and one arrow
 * style per edge mode (move `-->`, copy `==>`, divert `-.->`), every label quoted.
 */
export const graphMermaid = (graph: GraphShape): string => {
  const ids = mermaidIds(graph.nodes)
  const lines = ["flowchart TD", "  %% arrows: --> move, ==> copy (fork), -.-> divert (errors, quarantine)"]
  for (const n of graph.nodes) {
    const [open, close] = SHAPES[n.nodeType] ?? ["[", "]"]
    lines.push(`  ${ids.get(n.nodeId)!}${open}"${mermaidText(nodeLabel(n))}"${close}`)
  }
  // An edge naming a node the graph lacks still shows, to a node saying so.
  const idOf = (nodeId: string): string => {
    const known = ids.get(nodeId)
    if (known !== undefined) return known
    const id = `unknown_${ids.size}`
    ids.set(nodeId, id)
    lines.push(`  ${id}["${mermaidText(`unknown node ${nodeId}`)}"]`)
    return id
  }
  for (const e of graph.edges) {
    const from = idOf(e.from)
    const to = idOf(e.to)
    const label = e.mode === "move" ? e.label : `${e.label} (${e.mode})`
    lines.push(`  ${from} ${ARROWS[e.mode] ?? "-->"}|"${mermaidText(label)}"| ${to}`)
  }
  return lines.join("\n")
}

export const renderGraph = (graph: GraphShape, format: GraphFormat): string =>
  format === "mermaid" ? graphMermaid(graph) : graphText(graph)
