/**
 * Route validation, run before any row is read: every gate destination, transform
 * `on_error`, source `on_validation_failure` and sink `on_write_failure` must name an
 * existing sink (or one of the reserved words). Messages follow the seed refactor plan
 * and, for `on_write_failure`, ELSPETH's.
 */
import { RouteValidationError } from "./types.js"

/** Python's repr of a sorted list of names: `['a', 'b']`. */
export const sortedNames = (names: Iterable<string>): string =>
  `[${Array.from(names).sort().map((n) => `'${n}'`).join(", ")}]`

export interface GateRoutes {
  readonly name: string
  readonly routes: Readonly<Record<string, string>>
}

export const validateRouteDestinations = (
  gates: ReadonlyArray<GateRoutes>,
  availableSinks: ReadonlySet<string>
): RouteValidationError | undefined => {
  for (const [index, gate] of gates.entries()) {
    for (const [label, destination] of Object.entries(gate.routes)) {
      if (destination === "continue" || destination === "fork") continue
      if (!availableSinks.has(destination)) {
        return new RouteValidationError({
          key: `gates[${index}].routes.${label}`,
          message: `Gate '${gate.name}' can route to '${destination}' (via route label '${label}') but no sink named ` +
            `'${destination}' exists. Available sinks: ${sortedNames(availableSinks)}`
        })
      }
    }
  }
  return undefined
}

export interface TransformErrorRoute {
  readonly name: string
  readonly onError: string | undefined
  /** Key path of the `on_error` option, e.g. `transforms[1].options.on_error`. */
  readonly key: string
}

export const validateTransformErrorSinks = (
  transforms: ReadonlyArray<TransformErrorRoute>,
  availableSinks: ReadonlySet<string>
): RouteValidationError | undefined => {
  for (const t of transforms) {
    if (t.onError === undefined || t.onError === "discard") continue
    if (!availableSinks.has(t.onError)) {
      return new RouteValidationError({
        key: t.key,
        message: `Transform '${t.name}' has on_error='${t.onError}' but no sink named '${t.onError}' exists. ` +
          `Available sinks: ${sortedNames(availableSinks)}. Use 'discard' to drop error rows without routing.`
      })
    }
  }
  return undefined
}

export const validateSourceQuarantineDestination = (
  source: { readonly name: string; readonly onValidationFailure: string },
  availableSinks: ReadonlySet<string>
): RouteValidationError | undefined => {
  const destination = source.onValidationFailure
  if (destination === "discard" || availableSinks.has(destination)) return undefined
  return new RouteValidationError({
    key: "source.options.on_validation_failure",
    message: `Source '${source.name}' has on_validation_failure='${destination}' but no sink named '${destination}' exists. ` +
      `Available sinks: ${sortedNames(availableSinks)}. Use 'discard' to drop invalid rows without routing.`
  })
}

/** Plugins a failsink may use: files an auditor can read back (ELSPETH allows xml too). */
export const FAILSINK_PLUGINS: ReadonlySet<string> = new Set(["csv", "json", "xml"])

export interface SinkWriteFailure {
  readonly name: string
  readonly plugin: string
  /** `discard`, a sink name, or undefined (the older settings form: such a row fails the run). */
  readonly onWriteFailure: string | undefined
}

/**
 * Checks every sink's `on_write_failure`, in settings order: `discard`, or another
 * sink that exists, is a csv/json/xml sink, and has `on_write_failure: discard` itself
 * (a failsink does not divert again: no chains).
 */
export const validateWriteFailure = (sinks: ReadonlyArray<SinkWriteFailure>): RouteValidationError | undefined => {
  const byName = new Map(sinks.map((s) => [s.name, s]))
  for (const sink of sinks) {
    const destination = sink.onWriteFailure
    if (destination === undefined || destination === "discard") continue
    const key = `sinks.${sink.name}.on_write_failure`
    if (destination.trim() === "") {
      return new RouteValidationError({ key, message: "on_write_failure must be a sink name or 'discard'" })
    }
    const target = byName.get(destination)
    if (target === undefined) {
      return new RouteValidationError({
        key,
        message: `Sink '${sink.name}' on_write_failure references unknown sink '${destination}'. Available sinks: ${sortedNames(byName.keys())}.`
      })
    }
    if (target === sink) {
      return new RouteValidationError({
        key,
        message: `Sink '${sink.name}' on_write_failure references itself. A sink cannot be its own failsink.`
      })
    }
    if (!FAILSINK_PLUGINS.has(target.plugin)) {
      return new RouteValidationError({
        key,
        message: `Sink '${sink.name}' on_write_failure references '${destination}' (plugin='${target.plugin}'), but failsinks must use csv, json, or xml plugins.`
      })
    }
    if (target.onWriteFailure !== "discard") {
      const has = target.onWriteFailure === undefined ? "no on_write_failure" : `on_write_failure='${target.onWriteFailure}'`
      return new RouteValidationError({
        key,
        message: `Sink '${sink.name}' on_write_failure references '${destination}', but '${destination}' has ${has}. ` +
          `Failsink targets must have on_write_failure='discard' (no chains).`
      })
    }
  }
  return undefined
}
