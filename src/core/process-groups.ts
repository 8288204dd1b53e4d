/**
 * Process groups as the kernel shows them: who is still alive in a group, and which
 * groups hold a process carrying an environment marker. Plain synchronous Node with no
 * other import, so that the watchdog process (loop/watchdog-process.ts) starts fast and
 * the Landscape's reaper can use it too. On Linux it reads /proc; elsewhere a group is
 * probed with signal 0 and markers cannot be read.
 */
import * as NodeFs from "node:fs"

/** The environment variable that names the supervised command a process belongs to. */
export const COMMAND_ID_ENV = "RUNLEDGER_COMMAND_ID"
/** The environment variable that names the loop run a process belongs to. */
export const RUN_ID_ENV = "RUNLEDGER_RUN_ID"

export const canReadProcesses = process.platform === "linux"

interface ProcStat {
  readonly pid: number
  readonly state: string
  readonly pgrp: number
}

const pidEntries = (): Array<number> => {
  let entries: Array<string>
  try {
    entries = NodeFs.readdirSync("/proc")
  } catch {
    return []
  }
  const pids: Array<number> = []
  for (const entry of entries) {
    const c = entry.charCodeAt(0)
    if (c >= 48 && c <= 57) pids.push(Number(entry))
  }
  return pids
}

const readStat = (pid: number): ProcStat | undefined => {
  let stat: string
  try {
    stat = NodeFs.readFileSync(`/proc/${pid}/stat`, "latin1")
  } catch {
    return undefined
  }
  // Fields after the parenthesised comm (which may hold spaces): state ppid pgrp ...
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return { pid, state: rest[0] ?? "", pgrp: Number(rest[2]) }
}

/** Whether signal 0 finds a process of the group (zombies included). */
const groupExists = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== "ESRCH"
  }
}

/**
 * Live (non-zombie) members of a process group. Zombies waiting for a reaper do not
 * count as survivors. Without /proc the group leader stands for the group.
 */
export const groupMembers = (pgid: number): Array<number> => {
  // Cheap probe first: an empty group needs no /proc scan.
  if (!groupExists(pgid)) return []
  if (!canReadProcesses) return [pgid]
  const members: Array<number> = []
  for (const pid of pidEntries()) {
    const stat = readStat(pid)
    if (stat !== undefined && stat.state !== "Z" && stat.pgrp === pgid) members.push(pid)
  }
  return members
}

/** Which of `pgids` still have a live (non-zombie) member: one scan of /proc for all of them. */
export const liveGroups = (pgids: Iterable<number>): Set<number> => {
  const wanted = new Set<number>()
  for (const pgid of pgids) if (groupExists(pgid)) wanted.add(pgid)
  if (!canReadProcesses || wanted.size === 0) return wanted
  const live = new Set<number>()
  for (const pid of pidEntries()) {
    const stat = readStat(pid)
    if (stat !== undefined && stat.state !== "Z" && wanted.has(stat.pgrp)) live.add(stat.pgrp)
  }
  return live
}

/** The value of `name` in the process's environment (undefined when unset or unreadable). */
export const environValue = (pid: number, name: string): string | undefined => {
  let environ: Buffer
  try {
    environ = NodeFs.readFileSync(`/proc/${pid}/environ`)
  } catch {
    return undefined
  }
  const prefix = `${name}=`
  let start = 0
  while (start < environ.length) {
    let end = environ.indexOf(0, start)
    if (end === -1) end = environ.length
    if (end - start >= prefix.length && environ.toString("latin1", start, start + prefix.length) === prefix) {
      return environ.toString("utf8", start + prefix.length, end)
    }
    start = end + 1
  }
  return undefined
}

/** Whether the process's environment holds `name=value` (false when it cannot be read). */
export const environHas = (pid: number, name: string, value: string): boolean => environValue(pid, name) === value

/**
 * The live members of `pgid`, provided one of them carries `name=value` in its
 * environment: a group number can be reused once every member of the old group is
 * gone, and a marker naming one command (a random id) cannot be carried by a stranger.
 * Empty when no member carries it, or when processes cannot be read.
 */
export const markedGroupMembers = (pgid: number, name: string, value: string): Array<number> => {
  if (!canReadProcesses) return []
  const members = groupMembers(pgid)
  return members.some((pid) => environHas(pid, name, value)) ? members : []
}

/** The process group of a live process carrying `name=<value>`, for each of `values` found. */
export const groupsCarrying = (name: string, values: ReadonlySet<string>): Map<string, number> => {
  const found = new Map<string, number>()
  if (!canReadProcesses || values.size === 0) return found
  for (const pid of pidEntries()) {
    if (pid === process.pid) continue
    const value = environValue(pid, name)
    if (value === undefined || !values.has(value) || found.has(value)) continue
    const stat = readStat(pid)
    if (stat !== undefined && stat.state !== "Z") found.set(value, stat.pgrp)
    if (found.size === values.size) break
  }
  return found
}

/** Sends `signal` to every process of the group; a group already gone is not an error. */
export const signalGroup = (pgid: number, signal: NodeJS.Signals): void => {
  if (pgid <= 1) return
  try {
    process.kill(-pgid, signal)
  } catch {
    // ESRCH: the group is already gone.
  }
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * SIGTERM to every group that still has a live member, up to `graceMs` for them to
 * exit, then SIGKILL to the rest and up to `killWaitMs` more for the kernel to take
 * them. Resolves with the number of groups it found alive.
 */
export const terminateGroups = async (
  pgids: Iterable<number>,
  graceMs: number,
  killWaitMs = 5000
): Promise<number> => {
  let left = liveGroups(pgids)
  const found = left.size
  if (found === 0) return 0
  for (const pgid of left) signalGroup(pgid, "SIGTERM")
  const graceEnd = Date.now() + graceMs
  while (left.size > 0 && Date.now() < graceEnd) {
    await pause(10)
    left = liveGroups(left)
  }
  if (left.size === 0) return found
  for (const pgid of left) signalGroup(pgid, "SIGKILL")
  const killEnd = Date.now() + killWaitMs
  while (left.size > 0 && Date.now() < killEnd) {
    await pause(10)
    left = liveGroups(left)
  }
  return found
}
