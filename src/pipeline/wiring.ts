/**
 * Wiring: where the output of every node goes, in either settings form.
 *
 * - The explicit form (ELSPETH's current format, selected by `source.on_success`):
 *   connections are names. A node's `on_success` (a gate's route, a fork branch)
 *   produces a connection or names a sink; a node's `input` consumes a connection.
 *   Every consumed connection has exactly one producer, every produced connection
 *   exactly one consumer, and connection names never equal sink names. Unlike
 *   ELSPETH, `on_error` (transforms, aggregations) and `on_write_failure` (sinks) may
 *   be left out: such a failure then stops the run, as in the positional form.
 * - The older positional form: list order wires transforms → aggregations → gates,
 *   `continue` moves to the next step, and what reaches the end goes to the sink named
 *   like the token's fork branch, else to `default_sink`.
 *
 * Both come out as the same `Wiring`: the chain of processing nodes in execution order
 * and, for every output of every node, its destination. The plan builder (build.ts)
 * turns that into steps and graph edges; the processor follows the destinations.
 */
import { didYouMean } from "./plugins/options.js"
import { type CoalesceSettings, type PipelineSettings, SettingsError } from "./settings.js"

export type NodeKind = "transform" | "aggregation" | "gate" | "coalesce"

export interface NodeRef {
  readonly kind: NodeKind
  /** Index in the settings list of that kind. */
  readonly index: number
}

/** Where rows go next. */
export type Dest =
  /** A processing node; `branch` names the branch a token arrives on at a coalesce. */
  | { readonly _tag: "Node"; readonly node: NodeRef; readonly branch?: string }
  | { readonly _tag: "Sink"; readonly name: string }
  /** The older form's end of the chain: the sink named like the token's branch, else default_sink. */
  | { readonly _tag: "End" }

export type RouteDest = Dest | { readonly _tag: "Fork" }

export interface GateWiring {
  readonly routes: ReadonlyMap<string, RouteDest>
  readonly branches: ReadonlyArray<{ readonly branch: string; readonly dest: Dest }>
}

export interface CoalesceWiring {
  readonly dest: Dest
  /** Branch names in the order the settings give them. */
  readonly branches: ReadonlyArray<string>
  /** Gates (indexes) forking the branches. */
  readonly gates: ReadonlyArray<number>
}

/** A named connection of the explicit form: who produces it and who consumes it. */
export interface Connection {
  readonly name: string
  readonly producer: string
  readonly consumer: string
}

export interface Wiring {
  readonly explicit: boolean
  /** Transforms, aggregations and gates in execution order (coalesces sit between them by their destinations). */
  readonly chain: ReadonlyArray<NodeRef>
  readonly source: Dest
  readonly transforms: ReadonlyArray<Dest>
  readonly aggregations: ReadonlyArray<Dest>
  readonly gates: ReadonlyArray<GateWiring>
  readonly coalesces: ReadonlyArray<CoalesceWiring>
  readonly connections: ReadonlyArray<Connection>
}

/** Branch name → input connection (a list is the identity mapping). */
export const coalesceBranches = (c: CoalesceSettings): ReadonlyArray<readonly [string, string]> =>
  Array.isArray(c.branches)
    ? (c.branches as ReadonlyArray<string>).map((b) => [b, b] as const)
    : Object.entries(c.branches as Readonly<Record<string, string>>)

const RESERVED = new Set(["continue", "fork", "on_success"])

/** Whether the settings use the explicit form. */
export const isExplicit = (s: PipelineSettings): boolean => s.source.on_success !== undefined

const quoteList = (names: Iterable<string>): string => {
  const sorted = Array.from(names).sort()
  return sorted.length === 0 ? "(none)" : sorted.join(", ")
}

const suggestion = (name: string, candidates: Iterable<string>): string => {
  const hint = didYouMean(name, candidates)
  return hint === undefined ? "" : ` Did you mean '${hint}'?`
}

export const kindKey = (ref: NodeRef): string =>
  ref.kind === "transform" ? `transforms[${ref.index}]` : ref.kind === "aggregation" ? `aggregations[${ref.index}]` : ref.kind === "gate" ? `gates[${ref.index}]` : `coalesce[${ref.index}]`

/** Resolves the wiring of either form; fails with the key and both ends of a bad connection. */
export const wire = (file: string, s: PipelineSettings): Wiring => (isExplicit(s) ? explicitWiring(file, s) : positionalWiring(file, s))

// ---------------------------------------------------------------------------
// Older form

const positionalWiring = (file: string, s: PipelineSettings): Wiring => {
  const fail = (key: string, message: string): never => {
    throw new SettingsError({ file, key, message })
  }
  const wiringKeys: Array<string> = []
  for (const [i, t] of (s.transforms ?? []).entries()) {
    for (const k of ["input", "on_success", "on_error"] as const) if (t[k] !== undefined) wiringKeys.push(`transforms[${i}].${k}`)
  }
  for (const [i, g] of (s.gates ?? []).entries()) if (g.input !== undefined) wiringKeys.push(`gates[${i}].input`)
  for (const [i, a] of (s.aggregations ?? []).entries()) {
    for (const k of ["input", "on_success", "on_error"] as const) if (a[k] !== undefined) wiringKeys.push(`aggregations[${i}].${k}`)
  }
  for (const [i, c] of (s.coalesce ?? []).entries()) if (c.on_success !== undefined) wiringKeys.push(`coalesce[${i}].on_success`)
  if (wiringKeys.length > 0) {
    fail(
      wiringKeys[0]!,
      "explicit wiring needs source.on_success too: name the source's output connection (or sink) there, or remove input/on_success/on_error from the nodes to use the positional form"
    )
  }
  if (s.default_sink === undefined) {
    fail("default_sink", "missing: give default_sink (positional form) or source.on_success with input/on_success on every node (explicit form)")
  }
  const chain: Array<NodeRef> = [
    ...(s.transforms ?? []).map((_, index) => ({ kind: "transform" as const, index })),
    ...(s.aggregations ?? []).map((_, index) => ({ kind: "aggregation" as const, index })),
    ...(s.gates ?? []).map((_, index) => ({ kind: "gate" as const, index }))
  ]
  const at = (position: number): Dest => (position < chain.length ? { _tag: "Node", node: chain[position]! } : { _tag: "End" })
  const gateOffset = (s.transforms?.length ?? 0) + (s.aggregations?.length ?? 0)
  const branchGate = new Map<string, number>()
  for (const [i, g] of (s.gates ?? []).entries()) for (const b of g.fork_to ?? []) if (!branchGate.has(b)) branchGate.set(b, i)
  const coalesceOf = new Map<string, number>()
  for (const [i, c] of (s.coalesce ?? []).entries()) {
    if (!Array.isArray(c.branches)) {
      fail(`coalesce[${i}].branches`, "a branch → connection mapping needs the explicit form (source.on_success and input on every node); list the branches here")
    }
    for (const [b] of coalesceBranches(c)) if (!coalesceOf.has(b)) coalesceOf.set(b, i)
  }
  const gates = (s.gates ?? []).map((g, i): GateWiring => {
    const position = gateOffset + i
    const routes = new Map<string, RouteDest>()
    for (const [label, destination] of Object.entries(g.routes)) {
      routes.set(label, destination === "continue" ? at(position + 1) : destination === "fork" ? { _tag: "Fork" } : { _tag: "Sink", name: destination })
    }
    const branches = (g.fork_to ?? []).map((branch) => {
      const c = coalesceOf.get(branch)
      return { branch, dest: c === undefined ? at(position + 1) : { _tag: "Node" as const, node: { kind: "coalesce" as const, index: c }, branch } }
    })
    return { routes, branches }
  })
  const coalesces = (s.coalesce ?? []).map((c): CoalesceWiring => {
    const owners = coalesceBranches(c).map(([b]) => branchGate.get(b)).filter((g): g is number => g !== undefined)
    // The merged row continues after the last gate forking into the coalesce.
    const after = owners.length === 0 ? chain.length : gateOffset + Math.max(...owners) + 1
    return { dest: at(after), branches: coalesceBranches(c).map(([b]) => b), gates: Array.from(new Set(owners)) }
  })
  return {
    explicit: false,
    chain,
    source: at(0),
    transforms: (s.transforms ?? []).map((_, i) => at(i + 1)),
    aggregations: (s.aggregations ?? []).map((_, i) => at((s.transforms?.length ?? 0) + i + 1)),
    gates,
    coalesces,
    connections: []
  }
}

// ---------------------------------------------------------------------------
// Explicit form

interface End {
  readonly node: NodeRef | "source"
  readonly desc: string
  readonly key: string
  readonly branch?: string
}

const explicitWiring = (file: string, s: PipelineSettings): Wiring => {
  const fail = (key: string, message: string): never => {
    throw new SettingsError({ file, key, message })
  }
  const sinkNames = new Set(Object.keys(s.sinks))
  const transforms = s.transforms ?? []
  const gatesS = s.gates ?? []
  const aggregations = s.aggregations ?? []
  const coalesceS = s.coalesce ?? []

  if (s.default_sink !== undefined) {
    fail("default_sink", "there is no default sink in the explicit form (source.on_success is set): every node names where its rows go with on_success")
  }

  // Names: required, unique across processing nodes, not reserved.
  const names = new Map<string, string>()
  const claimName = (name: string, key: string) => {
    if (name.trim() === "") fail(key, "must not be empty")
    if (RESERVED.has(name) || name.startsWith("__")) fail(key, `'${name}' is reserved (continue, fork, on_success and names starting with '__')`)
    const other = names.get(name)
    if (other !== undefined) fail(key, `node name '${name}' is already used by ${other}; names must be unique across transforms, gates, aggregations and coalesce`)
    names.set(name, key.replace(/\.name$/, ""))
  }
  const required = (value: string | undefined, key: string, what: string): string => {
    if (value === undefined) return fail(key, `missing: ${what}`)
    if (value.trim() === "") return fail(key, `must not be empty: ${what}`)
    return value
  }
  for (const [i, t] of transforms.entries()) {
    const key = `transforms[${i}]`
    claimName(required(t.name, `${key}.name`, "every transform has a unique name in the explicit form"), `${key}.name`)
    required(t.input, `${key}.input`, "the connection this transform reads (a source, transform or gate output)")
    required(t.on_success, `${key}.on_success`, "a sink or connection name for the rows this transform passes")
    if (t.options !== undefined && Object.hasOwn(t.options, "on_error")) {
      fail(`${key}.options.on_error`, `in the explicit form on_error sits beside plugin (${key}.on_error), not in options`)
    }
  }
  for (const [i, a] of aggregations.entries()) {
    const key = `aggregations[${i}]`
    claimName(a.name, `${key}.name`)
    required(a.input, `${key}.input`, "the connection this aggregation reads")
  }
  for (const [i, g] of gatesS.entries()) {
    const key = `gates[${i}]`
    claimName(g.name, `${key}.name`)
    required(g.input, `${key}.input`, "the connection this gate reads")
    for (const [label, destination] of Object.entries(g.routes)) {
      if (destination === "continue") {
        fail(`${key}.routes.${label}`, "route destination 'continue' has been removed in the explicit form; use a connection name or a sink name")
      }
    }
  }
  for (const [i, c] of coalesceS.entries()) claimName(c.name, `coalesce[${i}].name`)

  const describe = (ref: NodeRef): string => {
    switch (ref.kind) {
      case "transform":
        return `transform '${transforms[ref.index]!.name}'`
      case "aggregation":
        return `aggregation '${aggregations[ref.index]!.name}'`
      case "gate":
        return `gate '${gatesS[ref.index]!.name}'`
      case "coalesce":
        return `coalesce '${coalesceS[ref.index]!.name}'`
    }
  }

  // Coalesce branches.
  const branchCoalesce = new Map<string, { index: number; input: string }>()
  for (const [i, c] of coalesceS.entries()) {
    for (const [b, input] of coalesceBranches(c)) {
      const key = `coalesce[${i}].branches${Array.isArray(c.branches) ? "" : `.${b}`}`
      if (input.trim() === "") fail(key, `branch '${b}' names no input connection`)
      const other = branchCoalesce.get(b)
      if (other !== undefined) {
        fail(key, `branch '${b}' is already merged by coalesce '${coalesceS[other.index]!.name}'; each fork branch merges at one coalesce`)
      }
      branchCoalesce.set(b, { index: i, input })
    }
  }

  // Producers.
  const producers = new Map<string, End & { label: string }>()
  const produce = (connection: string, end: End & { label: string }) => {
    const existing = producers.get(connection)
    if (existing !== undefined) {
      if (existing.node !== "source" && end.node !== "source" && existing.node.kind === "gate" && end.node.kind === "gate" && existing.node.index === end.node.index && existing.branch === undefined && end.branch === undefined) return
      fail(end.key, `duplicate producer for connection '${connection}': ${existing.desc} (${existing.key}) and ${end.desc} (${end.key})`)
    }
    producers.set(connection, end)
  }
  if (!sinkNames.has(s.source.on_success!)) produce(s.source.on_success!, { node: "source", desc: "the source", key: "source.on_success", label: "continue" })
  for (const [i, t] of transforms.entries()) {
    const ref: NodeRef = { kind: "transform", index: i }
    if (!sinkNames.has(t.on_success!)) produce(t.on_success!, { node: ref, desc: describe(ref), key: `transforms[${i}].on_success`, label: "continue" })
  }
  for (const [i, a] of aggregations.entries()) {
    const ref: NodeRef = { kind: "aggregation", index: i }
    const out = a.on_success ?? a.name
    if (!sinkNames.has(out)) produce(out, { node: ref, desc: describe(ref), key: a.on_success === undefined ? `aggregations[${i}].name` : `aggregations[${i}].on_success`, label: "continue" })
  }
  for (const [i, c] of coalesceS.entries()) {
    const ref: NodeRef = { kind: "coalesce", index: i }
    if (c.on_success === undefined) produce(c.name, { node: ref, desc: describe(ref), key: `coalesce[${i}].name`, label: "continue" })
  }
  const forkOwner = new Map<string, number>()
  for (const [i, g] of gatesS.entries()) {
    const ref: NodeRef = { kind: "gate", index: i }
    for (const [label, destination] of Object.entries(g.routes)) {
      if (destination === "fork" || sinkNames.has(destination)) continue
      produce(destination, { node: ref, desc: `gate '${g.name}' route '${label}'`, key: `gates[${i}].routes.${label}`, label })
    }
    const seen = new Set<string>()
    for (const [j, b] of (g.fork_to ?? []).entries()) {
      const key = `gates[${i}].fork_to[${j}]`
      if (seen.has(b)) fail(key, `gate '${g.name}' lists fork branch '${b}' twice; each fork branch name must be unique`)
      seen.add(b)
      const owner = forkOwner.get(b)
      if (owner !== undefined) {
        fail(key, `fork branch '${b}' is declared by gates '${gatesS[owner]!.name}' and '${g.name}'; fork branch names must be unique across all gates`)
      }
      forkOwner.set(b, i)
      const c = branchCoalesce.get(b)
      if ((c !== undefined && c.input === b) || sinkNames.has(b)) continue
      produce(b, { node: ref, desc: `fork branch '${b}' of gate '${g.name}'`, key, label: `fork:${b}`, branch: b })
    }
  }
  for (const [b, c] of branchCoalesce) {
    if (!forkOwner.has(b)) {
      const forked = Array.from(forkOwner.keys())
      fail(
        `coalesce[${c.index}].branches`,
        `coalesce '${coalesceS[c.index]!.name}' declares branch '${b}', but no gate forks to it (fork_to); branches forked by gates: ${quoteList(forked)}`
      )
    }
  }

  // Consumers.
  const consumers = new Map<string, End>()
  const consume = (connection: string, end: End) => {
    const existing = consumers.get(connection)
    if (existing !== undefined) {
      fail(end.key, `duplicate consumers for connection '${connection}': ${existing.desc} (${existing.key}) and ${end.desc} (${end.key}); use a gate to send rows two ways`)
    }
    consumers.set(connection, end)
  }
  for (const [i, t] of transforms.entries()) {
    const ref: NodeRef = { kind: "transform", index: i }
    consume(t.input!, { node: ref, desc: describe(ref), key: `transforms[${i}].input` })
  }
  for (const [i, a] of aggregations.entries()) {
    const ref: NodeRef = { kind: "aggregation", index: i }
    consume(a.input!, { node: ref, desc: describe(ref), key: `aggregations[${i}].input` })
  }
  for (const [i, g] of gatesS.entries()) {
    const ref: NodeRef = { kind: "gate", index: i }
    consume(g.input!, { node: ref, desc: describe(ref), key: `gates[${i}].input` })
  }
  for (const [b, c] of branchCoalesce) {
    if (c.input === b) continue
    const ref: NodeRef = { kind: "coalesce", index: c.index }
    consume(c.input, { node: ref, desc: `coalesce '${coalesceS[c.index]!.name}' branch '${b}'`, key: `coalesce[${c.index}].branches.${b}`, branch: b })
  }

  for (const [connection, end] of consumers) {
    if (sinkNames.has(connection)) {
      fail(end.key, `connection names overlap with sink names: ['${connection}'] (read by ${end.desc}); connection names and sink names must be disjoint — send rows to the sink with on_success or a route`)
    }
    if (!producers.has(connection)) {
      fail(
        end.key,
        `no producer for connection '${connection}' (read by ${end.desc}).${suggestion(connection, producers.keys())} Available connections: ${quoteList(producers.keys())}`
      )
    }
  }

  const toConsumer = (connection: string, producer: End & { label: string }): Dest => {
    const consumer = consumers.get(connection)
    if (consumer === undefined) {
      const hint = suggestion(connection, [...consumers.keys(), ...sinkNames])
      const what = producer.node === "source"
        ? `source on_success '${connection}' is neither a sink nor a known connection.`
        : producer.node.kind === "gate" && producer.branch === undefined
        ? `gate route target '${connection}' is neither a sink nor a known connection name.`
        : producer.branch !== undefined
        ? `gate '${gatesS[producer.node.index]!.name}' has fork branch '${connection}' with no destination: list it in a coalesce's branches, name a sink after it, or read it with a node's input.`
        : producer.node.kind === "coalesce"
        ? `dangling output connection with no consumer: ['${connection}'] (the merged rows of coalesce '${coalesceS[producer.node.index]!.name}'); every produced connection must be consumed or routed to a sink — read it with input: ${connection}, or give the coalesce on_success: <sink>.`
        : `${producer.desc} on_success '${connection}' is neither a sink nor a known connection (a dangling output).`
      return fail(producer.key, `${what}${hint} Sinks: ${quoteList(sinkNames)}; connections read by nodes: ${quoteList(consumers.keys())}`)
    }
    if (consumer.node === "source") throw new Error("the source consumes nothing")
    return consumer.branch === undefined ? { _tag: "Node", node: consumer.node } : { _tag: "Node", node: consumer.node, branch: consumer.branch }
  }
  const destOf = (target: string, producer: End & { label: string }): Dest =>
    sinkNames.has(target) ? { _tag: "Sink", name: target } : toConsumer(target, producer)

  const connections: Array<Connection> = []
  for (const [name, p] of producers) {
    const c = consumers.get(name)
    if (c !== undefined) connections.push({ name, producer: p.key, consumer: c.key })
  }

  const source = destOf(s.source.on_success!, { node: "source", desc: "the source", key: "source.on_success", label: "continue" })
  const transformDests = transforms.map((t, i) =>
    destOf(t.on_success!, producers.get(t.on_success!) ?? { node: { kind: "transform", index: i }, desc: describe({ kind: "transform", index: i }), key: `transforms[${i}].on_success`, label: "continue" })
  )
  const aggregationDests = aggregations.map((a, i) => {
    const out = a.on_success ?? a.name
    return destOf(out, producers.get(out) ?? { node: { kind: "aggregation", index: i }, desc: describe({ kind: "aggregation", index: i }), key: `aggregations[${i}].on_success`, label: "continue" })
  })
  const gates = gatesS.map((g, i): GateWiring => {
    const routes = new Map<string, RouteDest>()
    for (const [label, destination] of Object.entries(g.routes)) {
      routes.set(label, destination === "fork" ? { _tag: "Fork" } : destOf(destination, producers.get(destination)!))
    }
    const branches = (g.fork_to ?? []).map((branch) => {
      const c = branchCoalesce.get(branch)
      if (c !== undefined && c.input === branch) return { branch, dest: { _tag: "Node" as const, node: { kind: "coalesce" as const, index: c.index }, branch } }
      if (sinkNames.has(branch)) return { branch, dest: { _tag: "Sink" as const, name: branch } }
      return { branch, dest: toConsumer(branch, producers.get(branch)!) }
    })
    return { routes, branches }
  })
  const coalesces = coalesceS.map((c, i): CoalesceWiring => {
    let dest: Dest
    if (c.on_success === undefined) dest = toConsumer(c.name, producers.get(c.name)!)
    else if (sinkNames.has(c.on_success)) dest = { _tag: "Sink", name: c.on_success }
    else if (consumers.has(c.on_success)) {
      return fail(`coalesce[${i}].on_success`, `'${c.on_success}' is a connection; a coalesce's on_success names a sink (leave it out and read the merged rows with input: ${c.name})`)
    } else {
      return fail(`coalesce[${i}].on_success`, `no sink named '${c.on_success}'.${suggestion(c.on_success, sinkNames)} Sinks: ${quoteList(sinkNames)}`)
    }
    const branches = coalesceBranches(c).map(([b]) => b)
    return { dest, branches, gates: Array.from(new Set(branches.map((b) => forkOwner.get(b)!))) }
  })

  const chain = topologicalChain(file, { source, transforms: transformDests, aggregations: aggregationDests, gates, coalesces }, describe, s)
  return { explicit: true, chain, source, transforms: transformDests, aggregations: aggregationDests, gates, coalesces, connections }
}

const refKey = (r: NodeRef): string => `${r.kind}:${r.index}`

/**
 * Processing nodes in an order where every node comes after all that feed it, list
 * order (transforms, aggregations, gates, coalesce) among nodes free to go; a cycle
 * is a config error naming its nodes.
 */
const topologicalChain = (
  file: string,
  w: Pick<Wiring, "source" | "transforms" | "aggregations" | "gates" | "coalesces">,
  describe: (r: NodeRef) => string,
  s: PipelineSettings
): ReadonlyArray<NodeRef> => {
  const nodes: Array<NodeRef> = [
    ...(s.transforms ?? []).map((_, index) => ({ kind: "transform" as const, index })),
    ...(s.aggregations ?? []).map((_, index) => ({ kind: "aggregation" as const, index })),
    ...(s.gates ?? []).map((_, index) => ({ kind: "gate" as const, index })),
    ...(s.coalesce ?? []).map((_, index) => ({ kind: "coalesce" as const, index }))
  ]
  const rank = new Map(nodes.map((n, i) => [refKey(n), i]))
  const out = new Map<string, Array<NodeRef>>()
  const indegree = new Map<string, number>(nodes.map((n) => [refKey(n), 0]))
  const add = (from: NodeRef, d: RouteDest) => {
    if (d._tag !== "Node") return
    const list = out.get(refKey(from)) ?? []
    if (list.some((n) => refKey(n) === refKey(d.node))) return
    list.push(d.node)
    out.set(refKey(from), list)
    indegree.set(refKey(d.node), (indegree.get(refKey(d.node)) ?? 0) + 1)
  }
  w.transforms.forEach((d, index) => add({ kind: "transform", index }, d))
  w.aggregations.forEach((d, index) => add({ kind: "aggregation", index }, d))
  w.gates.forEach((g, index) => {
    for (const d of g.routes.values()) add({ kind: "gate", index }, d)
    for (const b of g.branches) add({ kind: "gate", index }, b.dest)
  })
  w.coalesces.forEach((c, index) => add({ kind: "coalesce", index }, c.dest))

  // Kahn's algorithm, taking the ready node that comes first in the lists.
  const ready = nodes.filter((n) => indegree.get(refKey(n)) === 0)
  const order: Array<NodeRef> = []
  while (ready.length > 0) {
    ready.sort((a, b) => rank.get(refKey(a))! - rank.get(refKey(b))!)
    const n = ready.shift()!
    order.push(n)
    for (const next of out.get(refKey(n)) ?? []) {
      const left = indegree.get(refKey(next))! - 1
      indegree.set(refKey(next), left)
      if (left === 0) ready.push(next)
    }
  }
  if (order.length < nodes.length) {
    // What is left holds a cycle: walk successors from one of them until a node repeats.
    const left = new Set(nodes.filter((n) => !order.some((o) => refKey(o) === refKey(n))).map(refKey))
    let at = nodes.find((n) => left.has(refKey(n)))!
    const path: Array<NodeRef> = []
    while (!path.some((p) => refKey(p) === refKey(at))) {
      path.push(at)
      at = (out.get(refKey(at)) ?? []).find((n) => left.has(refKey(n)))!
    }
    const cycle = [...path.slice(path.findIndex((p) => refKey(p) === refKey(at))), at]
    throw new SettingsError({
      file,
      key: kindKey(cycle[0]!),
      message: `the pipeline has a cycle through its connections: ${cycle.map(describe).join(" → ")}`
    })
  }
  return order.filter((n) => n.kind !== "coalesce")
}
