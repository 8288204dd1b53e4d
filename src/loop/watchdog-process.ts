/**
 * The watchdog process: one per runledger process that supervises commands, started
 * by loop/watchdog.ts in a session of its own (so a Ctrl-C or hang-up sent to the
 * terminal's process group never reaches it) with a pipe from runledger on its stdin.
 *
 * Node cannot ask the kernel to signal a child when its parent dies
 * (PR_SET_PDEATHSIG), but the kernel always closes a dead process's pipes. runledger
 * writes one line per event:
 *
 *   S <id>          a command is about to start; its processes carry RUNLEDGER_COMMAND_ID=<id>
 *   G <id> <pgid>   its process group
 *   E <id>          it ended and its group is gone
 *
 * When the pipe closes — runledger exited, normally or not — every command not ended
 * has its group sent SIGTERM, then SIGKILL after the grace period, and the watchdog
 * exits. After a normal exit no command is left, so it exits at once. A command
 * announced but whose group was never written (runledger died in between) is found by
 * its marker in /proc.
 *
 * A listed group is killed without checking who is in it: runledger writes `E` as soon
 * as a group is gone, so a group number still listed cannot have been handed to another
 * process in the meantime (that takes the whole pid space wrapping around).
 *
 * Usage: node watchdog-process.js <owner pid> <grace ms>
 */
import { COMMAND_ID_ENV, groupsCarrying, terminateGroups } from "../core/process-groups.js"

const graceMs = Math.max(0, Number(process.argv[3] ?? "5000") || 0)

/** Commands not ended: id → process group (undefined until runledger says). */
const commands = new Map<string, number | undefined>()

const onLine = (line: string) => {
  const [kind, id, pgid] = line.split(" ")
  if (id === undefined || id === "") return
  if (kind === "S") commands.set(id, undefined)
  else if (kind === "G" && Number(pgid) > 1) commands.set(id, Number(pgid))
  else if (kind === "E") commands.delete(id)
}

let pending = ""
let reaping = false

const reap = () => {
  if (reaping) return
  reaping = true
  const groups = new Set<number>()
  const unplaced = new Set<string>()
  for (const [id, pgid] of commands) {
    if (pgid === undefined) unplaced.add(id)
    else groups.add(pgid)
  }
  for (const pgid of groupsCarrying(COMMAND_ID_ENV, unplaced).values()) if (pgid > 1) groups.add(pgid)
  terminateGroups(groups, graceMs).then(
    () => process.exit(0),
    () => process.exit(1)
  )
}

// Only a closed pipe ends the watchdog: signals meant for runledger's terminal do not.
for (const signal of ["SIGINT", "SIGHUP", "SIGQUIT", "SIGTSTP"] as const) process.on(signal, () => {})

process.stdin.setEncoding("latin1")
process.stdin.on("data", (chunk: string) => {
  pending += chunk
  let nl = pending.indexOf("\n")
  while (nl !== -1) {
    onLine(pending.slice(0, nl))
    pending = pending.slice(nl + 1)
    nl = pending.indexOf("\n")
  }
})
process.stdin.on("end", reap)
process.stdin.on("close", reap)
process.stdin.on("error", reap)
