/**
 * The process's single SIGINT owner.
 *
 * By default the first SIGINT interrupts the running command (its finalizers run:
 * sinks close, the run is marked interrupted) and the process exits 130; a second
 * SIGINT exits at once. A command with its own drain semantics (the issue loop)
 * claims SIGINT for its duration instead.
 */
type Handler = (count: number) => void

const claims: Array<Handler> = []

/** Routes SIGINT to `handler` until the returned function is called. */
export const claimSigint = (handler: Handler): (() => void) => {
  claims.push(handler)
  return () => {
    const i = claims.lastIndexOf(handler)
    if (i >= 0) claims.splice(i, 1)
  }
}

/** Installs the process listener; `onDefault` handles SIGINT when nobody claimed it. */
export const installSigintOwner = (onDefault: Handler): void => {
  let count = 0
  process.on("SIGINT", () => {
    count++
    const claimed = claims[claims.length - 1]
    if (claimed !== undefined) claimed(count)
    else onDefault(count)
  })
}
