/**
 * Whether the process that owns a run is still alive. Only decidable on the host that
 * recorded it; a zombie counts as gone.
 */
import { readFileSync } from "node:fs"
import { hostname } from "node:os"

export const processIsGone = (pid: number, host: string): boolean => {
  if (host !== hostname()) return false
  if (pid === process.pid) return false
  try {
    process.kill(pid, 0)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH"
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z"
  } catch {
    return false
  }
}
