import * as NodeFs from "node:fs"

/** The last `bytes` of a file as UTF-8; "" when there is no file or it cannot be read. */
export const fileTail = (file: string | null, bytes: number): string => {
  if (file === null) return ""
  try {
    const fd = NodeFs.openSync(file, "r")
    try {
      const size = NodeFs.fstatSync(fd).size
      const length = Math.min(size, bytes)
      const buffer = Buffer.alloc(length)
      NodeFs.readSync(fd, buffer, 0, length, size - length)
      return buffer.toString("utf8")
    } finally {
      NodeFs.closeSync(fd)
    }
  } catch {
    return ""
  }
}
