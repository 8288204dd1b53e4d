/**
 * The DAG views of `validate --graph`: the text tree and the Mermaid flowchart, on
 * hand-made graphs (gate trees, forks, shared nodes, cycles, odd names), on random
 * DAGs, and on graphs the plan builder makes from settings.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import type { NodeId } from "../../src/core/ids.js"
import { graphMermaid, type GraphShape, graphText, nodeLabel, renderGraph } from "../../src/cli/graph-view.js"
import type { EdgeMode, NodeType } from "../../src/services/records.js"
import { planOf } from "../support/pipeline.js"

type Spec = readonly [NodeType, string, string?]

/** A graph from `[type, name, plugin?]` nodes (id = name) and `from>to label mode` edges. */
const graphOf = (nodes: ReadonlyArray<Spec>, edges: ReadonlyArray<string>): GraphShape => ({
  nodes: nodes.map(([nodeType, name, plugin]) => ({ nodeId: name as NodeId, nodeType, name, plugin: plugin ?? nodeType })),
  edges: edges.map((e) => {
    const [route, label, mode] = e.split(" ")
    const [from, to] = route!.split(">")
    return { from: from as NodeId, to: to as NodeId, label: label!, mode: mode as EdgeMode }
  })
})

const text = (lines: ReadonlyArray<string>) => lines.join("\n")

describe("nodeLabel", () => {
  it("names the type, the name and the plugin, leaving out what repeats", () => {
    assert.strictEqual(nodeLabel({ nodeId: "x" as NodeId, nodeType: "source", name: "source", plugin: "csv" }), "source (csv)")
    assert.strictEqual(nodeLabel({ nodeId: "x" as NodeId, nodeType: "gate", name: "by_region", plugin: "gate" }), "gate by_region")
    assert.strictEqual(
      nodeLabel({ nodeId: "x" as NodeId, nodeType: "transform", name: "trim notes", plugin: "truncate" }),
      "transform \"trim notes\" (truncate)"
    )
  })
})

describe("graphText", () => {
  it("draws a chain with its diversions next to the node they leave", () => {
    const graph = graphOf(
      [["source", "source", "csv"], ["transform", "clean", "field_mapper"], ["sink", "out", "csv"], ["sink", "bad", "json"], [
        "sink",
        "errors",
        "json"
      ]],
      ["source>clean continue move", "source>bad on_validation_failure divert", "clean>out continue move", "clean>errors on_error divert"]
    )
    assert.strictEqual(
      graphText(graph),
      text([
        "source (csv)",
        "├─ on_validation_failure [divert] → sink bad (json)",
        "└─ continue [move] → transform clean (field_mapper)",
        "   ├─ continue [move] → sink out (csv)",
        "   └─ on_error [divert] → sink errors (json)"
      ])
    )
  })

  it("draws a gate tree as a tree", () => {
    const graph = graphOf(
      [["source", "source", "csv"], ["gate", "size"], ["gate", "region"], ["gate", "priority"], ["sink", "big_north", "csv"], [
        "sink",
        "big_south",
        "csv"
      ], ["sink", "small_urgent", "csv"], ["sink", "small_other", "csv"]],
      [
        "source>size continue move",
        "size>region big move",
        "size>priority small move",
        "region>big_north north move",
        "region>big_south south move",
        "priority>small_urgent true move",
        "priority>small_other false move"
      ]
    )
    assert.strictEqual(
      graphText(graph),
      text([
        "source (csv)",
        "└─ continue [move] → gate size",
        "   ├─ big [move] → gate region",
        "   │  ├─ north [move] → sink big_north (csv)",
        "   │  └─ south [move] → sink big_south (csv)",
        "   └─ small [move] → gate priority",
        "      ├─ true [move] → sink small_urgent (csv)",
        "      └─ false [move] → sink small_other (csv)"
      ])
    )
  })

  it("puts each fork branch on its own line and draws the coalesce once", () => {
    const graph = graphOf(
      [["source", "source", "csv"], ["gate", "split"], ["coalesce", "join"], ["sink", "merged", "json"], ["sink", "audit", "json"]],
      [
        "source>split continue move",
        "split>join fork:a copy",
        "split>join fork:b copy",
        "split>audit fork:c copy",
        "join>merged continue move"
      ]
    )
    assert.strictEqual(
      graphText(graph),
      text([
        "source (csv)",
        "└─ continue [move] → gate split",
        "   ├─ fork:c [copy] → sink audit (json)",
        "   ├─ fork:a [copy] → coalesce join (see below)",
        "   └─ fork:b [copy] → coalesce join",
        "      └─ continue [move] → sink merged (json)"
      ])
    )
  })

  it("draws a merge point below the last path into it, whatever the order of the edges", () => {
    const edges = [
      "source>split continue move",
      "split>after false move",
      "split>join fork:a copy",
      "split>join fork:b copy",
      "join>after continue move",
      "after>out continue move"
    ]
    const nodes: ReadonlyArray<Spec> = [["source", "source", "csv"], ["gate", "split"], ["coalesce", "join"], ["transform", "after", "passthrough"], [
      "sink",
      "out",
      "csv"
    ]]
    for (const order of [edges, [...edges].reverse()]) {
      const lines = graphText(graphOf(nodes, order)).split("\n")
      const expanded = lines.findIndex((l) => l.endsWith("→ transform after (passthrough)"))
      assert.isAbove(expanded, 0, lines.join("\n"))
      // Drawn under the coalesce (one level deeper than the gate's own edges), its sink below it.
      assert.match(lines[expanded]!, /^ {3}[│ ] {2}└─ continue \[move\] → /, lines.join("\n"))
      assert.match(lines[expanded + 1]!, /└─ continue \[move\] → sink out \(csv\)$/)
      assert.isTrue(lines.some((l) => /─ false \[move\] → transform after \(passthrough\) \(see (above|below)\)$/.test(l)), lines.join("\n"))
    }
  })

  it("draws a node reached from two parents once and points back to it", () => {
    const graph = graphOf(
      [["source", "source", "csv"], ["gate", "g"], ["transform", "left", "passthrough"], ["transform", "right", "passthrough"], [
        "transform",
        "shared",
        "passthrough"
      ], ["sink", "out", "csv"]],
      [
        "source>g continue move",
        "g>left true move",
        "g>right false move",
        "left>shared continue move",
        "right>shared continue move",
        "shared>out continue move"
      ]
    )
    assert.strictEqual(
      graphText(graph),
      text([
        "source (csv)",
        "└─ continue [move] → gate g",
        "   ├─ true [move] → transform left (passthrough)",
        "   │  └─ continue [move] → transform shared (passthrough)",
        "   │     └─ continue [move] → sink out (csv)",
        "   └─ false [move] → transform right (passthrough)",
        "      └─ continue [move] → transform shared (passthrough) (see above)"
      ])
    )
  })

  it("ends on a cycle and shows nodes no edge reaches", () => {
    const graph = graphOf(
      [["source", "source", "csv"], ["transform", "a", "passthrough"], ["transform", "b", "passthrough"], ["sink", "out", "csv"], [
        "sink",
        "spare",
        "json"
      ]],
      ["source>a continue move", "a>b continue move", "b>a again move", "b>out done move"]
    )
    assert.strictEqual(
      graphText(graph),
      text([
        "source (csv)",
        "└─ continue [move] → transform a (passthrough)",
        "   └─ continue [move] → transform b (passthrough)",
        "      ├─ done [move] → sink out (csv)",
        "      └─ again [move] → transform a (passthrough) (cycle: drawn above)",
        "sink spare (json)  (not connected)"
      ])
    )
  })

  it("starts from the source whatever the order of the nodes", () => {
    const graph = graphOf([["sink", "out", "csv"], ["transform", "t", "passthrough"], ["source", "source", "csv"]], [
      "t>out continue move",
      "source>t continue move"
    ])
    assert.strictEqual(
      graphText(graph),
      text(["source (csv)", "└─ continue [move] → transform t (passthrough)", "   └─ continue [move] → sink out (csv)"])
    )
  })
})

// ---------------------------------------------------------------------------
// Random DAGs: every node and every edge shows, in both views

const TYPES: ReadonlyArray<NodeType> = ["transform", "aggregation", "gate", "coalesce"]
const MODES: ReadonlyArray<EdgeMode> = ["move", "copy", "divert"]

/** A source, middle nodes and sinks; edges only go forward, so the graph is a DAG. */
const arbitraryDag = fc
  .record({
    middle: fc.array(fc.constantFrom(...TYPES), { maxLength: 7 }),
    sinks: fc.integer({ min: 1, max: 4 }),
    edges: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.constantFrom(...MODES)), { maxLength: 25 }),
    order: fc.array(fc.nat(), { maxLength: 12 })
  })
  .map(({ edges, middle, order, sinks }): GraphShape => {
    const nodes = [
      { nodeId: "n0" as NodeId, nodeType: "source" as NodeType, name: "source", plugin: "csv" },
      ...middle.map((t, i) => ({ nodeId: `n${i + 1}` as NodeId, nodeType: t, name: `${t}_${i + 1}`, plugin: t })),
      ...Array.from({ length: sinks }, (_, i) => ({
        nodeId: `n${middle.length + 1 + i}` as NodeId,
        nodeType: "sink" as NodeType,
        name: `out-${i}`,
        plugin: "json"
      }))
    ]
    const firstSink = middle.length + 1
    const built: Array<GraphShape["edges"][number]> = []
    edges.forEach(([a, b, mode], k) => {
      const from = a % firstSink
      const to = from + 1 + (b % (nodes.length - from - 1))
      built.push({ from: `n${from}` as NodeId, to: `n${to}` as NodeId, label: `l${k}`, mode })
    })
    // Shuffle the node list: the views must not depend on it.
    const shuffled = [...nodes]
    order.forEach((o, i) => {
      const j = o % shuffled.length
      const k = i % shuffled.length
      ;[shuffled[j], shuffled[k]] = [shuffled[k]!, shuffled[j]!]
    })
    return { nodes: shuffled, edges: built }
  })

describe("the views on random DAGs", () => {
  it("the text tree has one line per edge and shows every node", () => {
    fc.assert(
      fc.property(arbitraryDag, (graph) => {
        const lines = graphText(graph).split("\n")
        const byId = new Map(graph.nodes.map((n) => [n.nodeId, n]))
        for (const e of graph.edges) {
          const pattern = `─ ${e.label} [${e.mode}] → ${nodeLabel(byId.get(e.to)!)}`
          assert.strictEqual(lines.filter((l) => l.includes(pattern)).length, 1, pattern)
        }
        const roots = lines.filter((l) => !/^[ │├└]/.test(l))
        const edgeLines = lines.length - roots.length
        assert.strictEqual(edgeLines, graph.edges.length)
        for (const n of graph.nodes) assert.isTrue(lines.some((l) => l.includes(nodeLabel(n))), nodeLabel(n))
        // The source comes first; a node with no way in starts a tree of its own.
        assert.isTrue(lines[0]!.startsWith("source (csv)"), lines[0])
      })
    )
  })

  it("the flowchart declares every node once and draws every edge with its mode's arrow", () => {
    fc.assert(
      fc.property(arbitraryDag, (graph) => {
        const lines = graphMermaid(graph).split("\n")
        assert.strictEqual(lines[0], "flowchart TD")
        const declarations = lines.filter((l) => /^ {2}[A-Za-z0-9_]+[([{]/.test(l))
        assert.strictEqual(declarations.length, graph.nodes.length)
        const ids = declarations.map((l) => /^ {2}([A-Za-z0-9_]+)/.exec(l)![1]!)
        assert.strictEqual(new Set(ids).size, ids.length)
        const arrows = lines.filter((l) => / (-->|==>|-\.->)\|/.test(l))
        assert.strictEqual(arrows.length, graph.edges.length)
        for (const e of graph.edges) {
          const arrow = { move: "-->", copy: "==>", divert: "-.->" }[e.mode]
          assert.isTrue(arrows.some((l) => l.includes(`${arrow}|"${e.label}`)), `${e.label} ${arrow}`)
        }
      })
    )
  })
})

// ---------------------------------------------------------------------------
// Mermaid syntax

describe("graphMermaid", () => {
  it("gives each node type its shape and each mode its arrow", () => {
    const graph = graphOf(
      [["source", "source", "csv"], ["transform", "t", "truncate"], ["aggregation", "batch", "batch_stats"], ["gate", "g"], [
        "coalesce",
        "c"
      ], ["sink", "out", "csv"], ["sink", "err", "json"]],
      ["source>t continue move", "t>err on_error divert", "t>batch continue move", "batch>g continue move", "g>c left copy", "c>out continue move"]
    )
    assert.strictEqual(
      graphMermaid(graph),
      text([
        "flowchart TD",
        "  %% arrows: --> move, ==> copy (fork), -.-> divert (errors, quarantine)",
        "  source_source([\"source (csv)\"])",
        "  transform_t[\"transform t (truncate)\"]",
        "  aggregation_batch[[\"aggregation batch (batch_stats)\"]]",
        "  gate_g{\"gate g\"}",
        "  coalesce_c{{\"coalesce c\"}}",
        "  sink_out[(\"sink out (csv)\")]",
        "  sink_err[(\"sink err (json)\")]",
        "  source_source -->|\"continue\"| transform_t",
        "  transform_t -.->|\"on_error (divert)\"| sink_err",
        "  transform_t -->|\"continue\"| aggregation_batch",
        "  aggregation_batch -->|\"continue\"| gate_g",
        "  gate_g ==>|\"left (copy)\"| coalesce_c",
        "  coalesce_c -->|\"continue\"| sink_out"
      ])
    )
  })

  it("sanitizes ids (unique after sanitizing) and escapes what would end or mark up a label", () => {
    const graph: GraphShape = {
      nodes: [
        { nodeId: "s" as NodeId, nodeType: "source", name: "source", plugin: "csv" },
        { nodeId: "g" as NodeId, nodeType: "gate", name: "amount > 1000 | \"big\" #1", plugin: "gate" },
        { nodeId: "a" as NodeId, nodeType: "sink", name: "out-1", plugin: "json" },
        { nodeId: "b" as NodeId, nodeType: "sink", name: "out_1", plugin: "json" },
        { nodeId: "c" as NodeId, nodeType: "sink", name: "end", plugin: "json" }
      ],
      edges: [
        { from: "s" as NodeId, to: "g" as NodeId, label: "continue", mode: "move" },
        { from: "g" as NodeId, to: "a" as NodeId, label: "say \"yes\"", mode: "move" },
        { from: "g" as NodeId, to: "b" as NodeId, label: "a|b <i>", mode: "move" },
        { from: "g" as NodeId, to: "c" as NodeId, label: "fork:x", mode: "copy" }
      ]
    }
    const out = graphMermaid(graph)
    const lines = out.split("\n")
    const ids = lines.slice(2, 7).map((l) => /^ {2}(\S+?)[([{]/.exec(l)![1]!)
    assert.deepStrictEqual(ids, ["source_source", "gate_amount___1000____big___1", "sink_out_1", "sink_out_1_2", "sink_end"])
    assert.strictEqual(lines[3], "  gate_amount___1000____big___1{\"gate #quot;amount #gt; 1000 #124; \\#quot;big\\#quot; #35;1#quot;\"}")
    assert.strictEqual(lines[8], "  gate_amount___1000____big___1 -->|\"say #quot;yes#quot;\"| sink_out_1")
    assert.strictEqual(lines[9], "  gate_amount___1000____big___1 -->|\"a#124;b #lt;i#gt;\"| sink_out_1_2")
    // Inside a quoted label nothing but the closing quote remains of ", <, >, |.
    for (const l of lines.slice(2)) {
      const labels = [...l.matchAll(/"([^"]*)"/g)].map((m) => m[1]!)
      assert.isAtLeast(labels.length, 1, l)
      for (const label of labels) assert.notMatch(label, /[<>|]/)
    }
  })

  it("still draws an edge to a node the graph lacks", () => {
    const graph = graphOf([["source", "source", "csv"]], ["source>ghost continue move"])
    assert.include(graphMermaid(graph), "source_source -->|\"continue\"| unknown_1")
    assert.include(graphText(graph), "└─ continue [move] → unknown node ghost")
  })
})

// ---------------------------------------------------------------------------
// Graphs the plan builder makes

const forkSettings = `
source: {plugin: "null"}
transforms:
  - name: tidy
    plugin: passthrough
    options: {schema: {mode: observed}, on_error: rejects}
gates:
  - name: split
    condition: "row['id'] >= 0"
    routes: {"true": fork, "false": continue}
    fork_to: [a, b, audit]
  - name: size
    condition: "row['amount'] > 10"
    routes: {"true": big, "false": continue}
coalesce:
  - name: join
    branches: [a, b]
sinks:
  out: {plugin: json, options: {path: out.json, schema: {mode: observed}}}
  big: {plugin: json, options: {path: big.json, schema: {mode: observed}}}
  audit: {plugin: json, options: {path: audit.json, schema: {mode: observed}}}
  rejects: {plugin: json, options: {path: rejects.json, schema: {mode: observed}}}
default_sink: out
`

describe("the views of a built plan", () => {
  it.effect("show every node and edge of a fork/coalesce pipeline", () =>
    Effect.gen(function*() {
      const plan = yield* planOf(forkSettings)
      const tree = renderGraph(plan.graph, "text")
      const lines = tree.split("\n")
      const byId = new Map(plan.graph.nodes.map((n) => [n.nodeId, n]))
      for (const e of plan.graph.edges) {
        const line = `─ ${e.label} [${e.mode}] → ${nodeLabel(byId.get(e.to)!)}`
        assert.strictEqual(lines.filter((l) => l.includes(line)).length, 1, `${line}\n${tree}`)
      }
      assert.strictEqual(lines[0], "source (null)")
      // Each fork branch is its own line.
      for (const branch of ["a", "b", "audit"]) assert.isTrue(lines.some((l) => l.includes(`fork:${branch} [copy]`)), tree)
      const mermaid = renderGraph(plan.graph, "mermaid")
      assert.strictEqual(mermaid.split("\n").filter((l) => /\|".*"\| /.test(l)).length, plan.graph.edges.length)
      assert.include(mermaid, "coalesce_join{{\"coalesce join\"}}")
    }))
})
