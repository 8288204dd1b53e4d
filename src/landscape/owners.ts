import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"

/**
 * Whether the process that owns a run (its recorded pid and host) is gone, so that a
 * row still reading `running` can only be a crash. Only decidable on the same host.
 */
export const ownerIsGone = (pid: number, host: string): boolean => {
  if (host !== NodeOs.hostname()) return false
  if (pid === process.pid) return false
  try {
    process.kill(pid, 0)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH"
  }
  // A zombie is gone too.
  try {
    const stat = NodeFs.readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z"
  } catch {
    return false
  }
}
