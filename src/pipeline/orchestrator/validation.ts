/**
 * Route validation, run before any row is read: every gate destination, transform
 * `on_error` and source `on_validation_failure` must name an existing sink (or one of
 * the reserved words). Messages follow the seed refactor plan.
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
