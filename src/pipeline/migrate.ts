/**
 * `runledger migrate-settings`: a positional-form settings file rewritten in the
 * explicit wiring of ELSPETH's current format, the same pipeline.
 *
 * The rewrite edits the YAML document itself, so comments, key order and `${VAR}`
 * references stay as they were (nothing is expanded into the output). What it adds:
 * `source.on_success`; `name`, `input` and `on_success` on every transform (its
 * `options.on_error` moves up beside `plugin`); `input` and `on_success` on
 * aggregations and gates; `continue` routes become connections; `default_sink` goes.
 *
 * Two positional pipelines have no explicit equivalent, and are refused with the
 * reason: a node fed from two places (e.g. a gate's `continue` and a coalesce that
 * merges after that gate — explicit connections have one producer each), and a fork
 * branch that runs on through later steps to a sink named like it.
 */
import { Effect } from "effect"
import { isMap, isScalar, isSeq, type Document, type Pair, parseDocument, type YAMLMap } from "yaml"
import { type LoadedSettings, parseSettings, SettingsError } from "./settings.js"
import { type Dest, isExplicit, kindKey, type NodeRef, wire } from "./wiring.js"

export interface Migrated {
  /** The settings in the explicit form (unchanged when already explicit). */
  readonly text: string
  /** What changed, for the user (stderr). */
  readonly notes: ReadonlyArray<string>
}

type Producer =
  | { readonly kind: "source" }
  | { readonly kind: "transform" | "aggregation" | "coalesce"; readonly index: number }
  | { readonly kind: "gate"; readonly index: number; readonly labels: Array<string> }

const refKey = (r: NodeRef): string => `${r.kind}:${r.index}`

/** Finds a mapping's pair by key, ignoring case (settings keys are not case-sensitive). */
const pairOf = (map: YAMLMap, key: string): Pair | undefined =>
  map.items.find((p) => isScalar(p.key) && String(p.key.value).toLowerCase() === key) as Pair | undefined

const mapAt = (doc: Document, parent: YAMLMap | undefined, key: string): YAMLMap | undefined => {
  const holder = parent ?? (doc.contents as YAMLMap)
  const p = pairOf(holder, key)
  return p !== undefined && isMap(p.value) ? (p.value as YAMLMap) : undefined
}

/** Sets `key` in `map`, placed after the first of `after` present (else first). */
const put = (doc: Document, map: YAMLMap, key: string, value: unknown, after: ReadonlyArray<string>): void => {
  const existing = pairOf(map, key)
  if (existing !== undefined) {
    existing.value = doc.createNode(value)
    return
  }
  const pair = doc.createPair(key, value)
  let at = -1
  for (const a of after) {
    const i = map.items.findIndex((p) => isScalar(p.key) && String(p.key.value).toLowerCase() === a)
    if (i >= 0) at = Math.max(at, i)
  }
  map.items.splice(at + 1, 0, pair)
}

const remove = (map: YAMLMap, key: string): boolean => {
  const i = map.items.findIndex((p) => isScalar(p.key) && String(p.key.value).toLowerCase() === key)
  if (i < 0) return false
  map.items.splice(i, 1)
  return true
}

const listItem = (doc: Document, key: string, index: number): YAMLMap => {
  const p = pairOf(doc.contents as YAMLMap, key)
  if (p === undefined || !isSeq(p.value) || !isMap(p.value.items[index])) throw new Error(`${key}[${index}] is not a mapping`)
  return p.value.items[index] as YAMLMap
}

/** Rewrites a positional-form settings file in the explicit form. */
export const migrateSettings = (
  file: string,
  text: string,
  env: Readonly<Record<string, string | undefined>> = process.env
): Effect.Effect<Migrated, SettingsError> =>
  Effect.flatMap(parseSettings(file, text, env), (loaded) =>
    Effect.try({
      try: () => rewrite(file, text, loaded),
      catch: (e) => {
        if (e instanceof SettingsError) return e
        throw e
      }
    }))

const rewrite = (file: string, text: string, loaded: LoadedSettings): Migrated => {
  const s = loaded.settings
  if (isExplicit(s)) return { text, notes: ["already in the explicit form (source.on_success is set); nothing to change"] }
  const refuse = (key: string, why: string): never => {
    throw new SettingsError({ file, key, message: `cannot be written in the explicit form: ${why}` })
  }
  const w = wire(file, s)
  const transforms = s.transforms ?? []
  const gates = s.gates ?? []
  const aggregations = s.aggregations ?? []
  const coalesces = s.coalesce ?? []
  const sinkNames = new Set(Object.keys(s.sinks))
  const defaultSink = s.default_sink!
  const lastGate = w.chain.length > 0 && w.chain[w.chain.length - 1]!.kind === "gate" ? w.chain[w.chain.length - 1]!.index : -1
  const nodeName = (r: NodeRef): string =>
    r.kind === "transform"
      ? transforms[r.index]!.name ?? `${transforms[r.index]!.plugin}_${r.index}`
      : r.kind === "aggregation"
      ? aggregations[r.index]!.name
      : r.kind === "gate"
      ? gates[r.index]!.name
      : coalesces[r.index]!.name

  // Who feeds each node.
  const feeders = new Map<string, Producer>()
  const feed = (to: Dest, from: Producer, key: string, label?: string) => {
    if (to._tag !== "Node" || to.node.kind === "coalesce") return
    const k = refKey(to.node)
    const existing = feeders.get(k)
    if (existing === undefined) {
      feeders.set(k, from.kind === "gate" ? { ...from, labels: label === undefined ? [] : [label] } : from)
      return
    }
    if (existing.kind === "gate" && from.kind === "gate" && existing.index === from.index) {
      if (label !== undefined) existing.labels.push(label)
      return
    }
    refuse(
      key,
      `${kindKey(to.node)} ('${nodeName(to.node)}') is fed from two places, and an explicit connection has one producer; route one of them elsewhere first`
    )
  }
  feed(w.source, { kind: "source" }, "source")
  w.transforms.forEach((d, index) => feed(d, { kind: "transform", index }, `transforms[${index}]`))
  w.aggregations.forEach((d, index) => feed(d, { kind: "aggregation", index }, `aggregations[${index}]`))
  w.gates.forEach((g, index) => {
    for (const [label, d] of g.routes) if (d._tag !== "Fork") feed(d, { kind: "gate", index, labels: [] }, `gates[${index}].routes.${label}`, label)
    for (const [j, b] of g.branches.entries()) {
      if (b.dest._tag === "Node" && b.dest.node.kind === "coalesce") continue
      if (index !== lastGate) {
        refuse(
          `gates[${index}].fork_to[${j}]`,
          `fork branch '${b.branch}' runs on through the later steps to the sink named like it; in the explicit form a branch goes straight to its sink`
        )
      }
    }
  })
  w.coalesces.forEach((c, index) => feed(c.dest, { kind: "coalesce", index }, `coalesce[${index}]`))

  // A connection name for each fed node, from what feeds it.
  const taken = new Set<string>([...sinkNames])
  const unique = (base: string): string => {
    let name = base
    for (let n = 2; taken.has(name); n++) name = `${base}_${n}`
    taken.add(name)
    return name
  }
  const connectionOf = new Map<string, string>()
  for (const [k, from] of feeders) {
    if (from.kind !== "coalesce") continue
    const name = coalesces[from.index]!.name
    if (taken.has(name)) refuse(`coalesce[${from.index}].name`, `the merged rows would travel on a connection named '${name}', which is a sink name or already taken; rename the coalesce`)
    taken.add(name)
    connectionOf.set(k, name)
  }
  for (const [k, from] of feeders) {
    if (from.kind === "coalesce") continue
    const base = from.kind === "source"
      ? "source_out"
      : from.kind === "gate"
      ? `${gates[from.index]!.name}_${from.labels.length === 1 ? from.labels[0]! : "continue"}`
      : `${nodeName({ kind: from.kind, index: from.index })}_out`
    connectionOf.set(k, unique(base))
  }
  const target = (d: Dest, branch?: string): string => {
    switch (d._tag) {
      case "Sink":
        return d.name
      case "End":
        return branch !== undefined && sinkNames.has(branch) ? branch : defaultSink
      case "Node":
        return connectionOf.get(refKey(d.node))!
    }
  }

  const doc = parseDocument(text, { uniqueKeys: true })
  const root = doc.contents as YAMLMap
  const notes: Array<string> = []
  const source = mapAt(doc, undefined, "source")!
  put(doc, source, "on_success", target(w.source), ["plugin"])
  for (const [i, t] of transforms.entries()) {
    const item = listItem(doc, "transforms", i)
    const ref: NodeRef = { kind: "transform", index: i }
    if (t.name === undefined) {
      put(doc, item, "name", nodeName(ref), [])
      notes.push(`transforms[${i}]: named '${nodeName(ref)}' (the name runledger gave it before)`)
    }
    put(doc, item, "input", connectionOf.get(refKey(ref))!, ["name", "plugin"])
    put(doc, item, "on_success", target(w.transforms[i]!), ["input"])
    const options = mapAt(doc, item, "options")
    const onError = options === undefined ? undefined : pairOf(options, "on_error")
    if (options !== undefined && onError !== undefined) {
      put(doc, item, "on_error", onError.value, ["on_success"])
      remove(options, "on_error")
      if (options.items.length === 0) remove(item, "options")
    }
  }
  for (const [i] of aggregations.entries()) {
    const item = listItem(doc, "aggregations", i)
    const ref: NodeRef = { kind: "aggregation", index: i }
    put(doc, item, "input", connectionOf.get(refKey(ref))!, ["plugin", "name"])
    put(doc, item, "on_success", target(w.aggregations[i]!), ["input"])
  }
  for (const [i, g] of gates.entries()) {
    const item = listItem(doc, "gates", i)
    const ref: NodeRef = { kind: "gate", index: i }
    put(doc, item, "input", connectionOf.get(refKey(ref))!, ["name"])
    const routes = mapAt(doc, item, "routes")!
    for (const [label, d] of w.gates[i]!.routes) {
      if (g.routes[label] !== "continue" || d._tag === "Fork") continue
      const pair = pairOf(routes, label.toLowerCase()) ?? routes.items.find((p) => isScalar(p.key) && String(p.key.value) === label)
      if (pair !== undefined) pair.value = doc.createNode(target(d))
    }
  }
  for (const [i] of coalesces.entries()) {
    const d = w.coalesces[i]!.dest
    if (d._tag !== "Node") put(doc, listItem(doc, "coalesce", i), "on_success", target(d), ["merge", "policy", "branches"])
  }
  remove(root, "default_sink")
  notes.push(`default_sink '${defaultSink}' removed: rows reach it through on_success`)
  return { text: doc.toString(), notes }
}
