/**
 * Operating-system errors of file sinks, in words, and the test-only fault injection
 * that produces them on demand.
 *
 * `RUNLEDGER_TEST_FAULT` (TEST ONLY, never set it in production) makes a file sink's
 * write or fsync fail as a full or broken disk would. A comma-separated list of
 *
 *     sink:<sink name>:<code>:after_bytes=<N>        writes fail once the file holds N bytes
 *     sink:<sink name>:<code>:fsync_after_bytes=<N>  fsync fails once the file holds more than N bytes
 *
 * with `<code>` one of enospc, edquot, efbig, eio, eacces, eperm, erofs. A write that
 * crosses N first writes the bytes up to N (a short write, as a full disk does), then
 * fails, so the file really holds a torn record until the sink cuts it back.
 */
import type { SinkIoReason } from "../protocol.js"
import { PluginConfigError, PluginRunError, SinkIoError } from "../protocol.js"

/** Who is failing, for every message: `sink 'out' (csv, out/result.csv)`. */
export interface SinkLabel {
  readonly plugin: string
  readonly nodeName: string
  readonly target: string
}

export const FAULT_ENV = "RUNLEDGER_TEST_FAULT"

const CODES: Readonly<Record<string, { readonly words: string; readonly reason: SinkIoReason }>> = {
  ENOSPC: { words: "no space left on device", reason: "NoSpace" },
  EDQUOT: { words: "disk quota exceeded", reason: "NoSpace" },
  EFBIG: { words: "file too large", reason: "NoSpace" },
  EIO: { words: "input/output error", reason: "Io" },
  EACCES: { words: "permission denied", reason: "PermissionDenied" },
  EPERM: { words: "operation not permitted", reason: "PermissionDenied" },
  EROFS: { words: "read-only file system", reason: "PermissionDenied" },
  ENOENT: { words: "no such file or directory", reason: "Other" },
  EISDIR: { words: "is a directory", reason: "Other" },
  ENOTDIR: { words: "not a directory", reason: "Other" },
  EMFILE: { words: "too many open files", reason: "Other" },
  EBADF: { words: "bad file descriptor", reason: "Other" }
}

const codeOf = (cause: unknown): string | undefined => {
  const code = typeof cause === "object" && cause !== null ? (cause as { code?: unknown }).code : undefined
  return typeof code === "string" ? code : undefined
}

/** `no space left on device (ENOSPC)`; the error's own message for codes not listed. */
export const describeIoCause = (cause: unknown): string => {
  const code = codeOf(cause)
  const known = code === undefined ? undefined : CODES[code]
  if (known !== undefined) return `${known.words} (${code})`
  const text = cause instanceof Error ? cause.message : String(cause)
  return code === undefined ? text : text.startsWith(`${code}:`) ? `${text.slice(code.length + 1).trim()} (${code})` : `${text} (${code})`
}

/**
 * The failure of an input/output operation on `path`: a PluginRunError whose message
 * says what failed and why in words, with a SinkIoError as its cause. `after` is
 * appended to the message (what the sink did about it).
 */
export const ioError = (
  label: SinkLabel,
  operation: SinkIoError["operation"],
  what: string,
  path: string,
  cause: unknown,
  after = ""
): PluginRunError => {
  const code = codeOf(cause)
  const description = describeIoCause(cause)
  const message = `${what}: ${description}${after}`
  const io = new SinkIoError({
    reason: code === undefined ? "Other" : CODES[code]?.reason ?? "Other",
    sink: label.nodeName,
    plugin: label.plugin,
    path,
    operation,
    code,
    description,
    message: `sink '${label.nodeName}' (${label.plugin}, ${label.target}): ${message}`,
    cause
  })
  return new PluginRunError({ plugin: label.plugin, message: io.message, cause: io })
}

// ---------------------------------------------------------------------------
// Fault injection (tests only)

export interface Fault {
  readonly code: string
  readonly on: "write" | "fsync"
  readonly afterBytes: number
}

const SPEC = /^sink:([^:]+):([a-z]+):(after_bytes|fsync_after_bytes)=(\d+)$/

/** The faults `env` asks for on the sink named `sinkName`. */
export const faultsFor = (
  plugin: string,
  sinkName: string,
  env: Readonly<Record<string, string | undefined>> = process.env
): { readonly faults: ReadonlyArray<Fault> } | { readonly error: PluginConfigError } => {
  const text = env[FAULT_ENV]
  if (text === undefined || text.trim() === "") return { faults: [] }
  const faults: Array<Fault> = []
  for (const part of text.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const m = SPEC.exec(part)
    const code = m?.[2]?.toUpperCase()
    if (m === null || code === undefined || CODES[code] === undefined || ["ENOENT", "EISDIR", "ENOTDIR", "EMFILE", "EBADF"].includes(code)) {
      return {
        error: new PluginConfigError({
          plugin,
          key: "",
          value: part,
          message: `${FAULT_ENV} (test only): cannot read '${part}'; expected sink:<name>:<enospc|edquot|efbig|eio|eacces|eperm|erofs>:<after_bytes|fsync_after_bytes>=<N>`
        })
      }
    }
    if (m[1] === sinkName) faults.push({ code, on: m[3] === "after_bytes" ? "write" : "fsync", afterBytes: Number(m[4]) })
  }
  return { faults }
}

/** An error shaped like the one Node gives for a failed system call. */
export const injectedError = (code: string, syscall: string, path: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`${code}: ${CODES[code]?.words ?? "injected fault"}, ${syscall}`), {
    code,
    syscall,
    path,
    injected: true
  })
