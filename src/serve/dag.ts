/**
 * A run's DAG as inline SVG: dagre lays out the recorded nodes and edges (positions
 * and edge routes computed here, on the server); this file only draws what dagre
 * placed. Every label is escaped; each node links to its section of the run page.
 */
import { Graph, layout } from "@dagrejs/dagre"
import type { EdgeRecord, NodeRecord, RunGraphCounts } from "../landscape/explorer-queries.js"
import { escapeHtml, Html } from "./html.js"

const NODE_WIDTH = 168
const NODE_HEIGHT = 46

const fmt = (n: number) => Math.round(n * 10) / 10

/** The SVG of the graph, with each node's token count and each edge's label and row count. */
export const dagSvg = (
  nodes: ReadonlyArray<NodeRecord>,
  edges: ReadonlyArray<EdgeRecord>,
  counts: RunGraphCounts
): Html => {
  const g = new Graph({ multigraph: true })
  g.setGraph({ rankdir: "LR", nodesep: 28, ranksep: 56, edgesep: 14, marginx: 12, marginy: 12 })
  g.setDefaultEdgeLabel(() => ({}))
  for (const n of nodes) g.setNode(n.node_id, { width: NODE_WIDTH, height: NODE_HEIGHT })
  const known = new Set(nodes.map((n) => n.node_id))
  const drawn = edges.filter((e) => known.has(e.from_node_id) && known.has(e.to_node_id))
  for (const e of drawn) {
    g.setEdge(e.from_node_id, e.to_node_id, { width: Math.max(40, e.label.length * 7 + 30), height: 16, labelpos: "c" }, e.edge_id)
  }
  layout(g)
  const graph = g.graph()
  const width = Math.ceil(graph.width ?? 0)
  const height = Math.ceil(graph.height ?? 0)
  const parts: Array<string> = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="dag" role="img" aria-label="pipeline graph" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">` +
    `<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>`
  ]
  for (const e of drawn) {
    const laid = g.edge(e.from_node_id, e.to_node_id, e.edge_id)
    const points = laid.points ?? []
    if (points.length === 0) continue
    const d = points.map((p: { x: number; y: number }, i: number) => `${i === 0 ? "M" : "L"}${fmt(p.x)},${fmt(p.y)}`).join(" ")
    const n = counts.edges[e.edge_id]
    const label = `${e.label}${n === undefined ? "" : n === null ? " (?)" : ` (${n})`}`
    parts.push(
      `<g class="edge edge-${escapeHtml(e.mode)}" data-edge="${escapeHtml(e.edge_id)}">` +
        `<path d="${d}" fill="none" stroke="${e.mode === "divert" ? "#b35c00" : "#555"}" stroke-width="1.4"` +
        `${e.mode === "divert" ? " stroke-dasharray=\"5 3\"" : ""} marker-end="url(#arrow)"/>` +
        (laid.x === undefined || laid.y === undefined ? "" :
          `<text x="${fmt(laid.x)}" y="${fmt(laid.y + 4)}" text-anchor="middle" font-size="11" fill="#333">${escapeHtml(label)}</text>`) +
        `</g>`
    )
  }
  const fill: Record<string, string> = {
    source: "#dbeafe",
    transform: "#ecfccb",
    gate: "#fef3c7",
    aggregation: "#ede9fe",
    coalesce: "#fce7f3",
    sink: "#e5e7eb"
  }
  for (const n of nodes) {
    const laid = g.node(n.node_id)
    if (laid === undefined) continue
    const x = fmt(laid.x - NODE_WIDTH / 2)
    const y = fmt(laid.y - NODE_HEIGHT / 2)
    const tokens = counts.nodes[n.node_id]
    const sub = `${n.node_type} · ${n.plugin_name}${tokens === undefined ? "" : ` · ${tokens}`}`
    parts.push(
      `<a href="#node-${escapeHtml(encodeURIComponent(n.node_id))}" class="node" data-node="${escapeHtml(n.node_id)}">` +
        `<rect x="${x}" y="${y}" width="${NODE_WIDTH}" height="${NODE_HEIGHT}" rx="6" fill="${fill[n.node_type] ?? "#fff"}" stroke="#444"/>` +
        `<text x="${fmt(laid.x)}" y="${fmt(laid.y - 4)}" text-anchor="middle" font-size="13" font-weight="600" fill="#111">${escapeHtml(clip(n.name, 22))}</text>` +
        `<text x="${fmt(laid.x)}" y="${fmt(laid.y + 13)}" text-anchor="middle" font-size="10.5" fill="#333">${escapeHtml(clip(sub, 30))}</text>` +
        `</a>`
    )
  }
  parts.push("</svg>")
  return new Html(parts.join(""))
}

const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text)
