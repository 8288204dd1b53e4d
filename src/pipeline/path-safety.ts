/**
 * The start-up check that no two writers share a file and no writer destroys what the
 * run reads or records: a sink must not write the source's input file, two sinks must
 * not write one file, and no sink (nor the export) may write the Landscape database.
 *
 * Paths are compared as the files they name: relative paths resolve against the
 * working directory, `..` and `.` segments and symbolic links (of the file and of its
 * folders, also for files not created yet) are resolved, and two existing paths that
 * are hard links of one file are the same too.
 */
import { lstatSync, readlinkSync, realpathSync, statSync } from "node:fs"
import { dirname, isAbsolute, join, parse, resolve } from "node:path"

/** A file a run reads or writes, and the settings key that names it. */
export interface PathClaim {
  /** e.g. `sinks.out.options.path`, `source.options.path`, `landscape.url`, `--db`. */
  readonly key: string
  /** As configured. */
  readonly path: string
  readonly role: "source" | "sink" | "landscape" | "journal" | "export"
  /** The sink's name, for sink and export claims. */
  readonly sink?: string
  /** The part of the file this writer alone writes (a table): writers of different parts of one file do not conflict. */
  readonly part?: string
}

export interface PathConflict {
  /** The claim the error is reported at (the later writer). */
  readonly claim: PathClaim
  /** The claim it collides with. */
  readonly other: PathClaim
  /** The file both name, resolved. */
  readonly resolved: string
  readonly message: string
}

const MAX_LINKS = 40

/**
 * The absolute path `path` names once symbolic links and `.`/`..` are resolved, the
 * way the operating system would: component by component, each link replaced by its
 * target (so `link/..` is the parent of the link's target, not the folder holding the
 * link). Components that do not exist yet are kept as they are, so a file not yet
 * created resolves through its (linked) folders; a dangling link resolves to its target.
 */
export const canonicalPath = (path: string, cwd: string = process.cwd()): string => walk(path, cwd, 0)

const realDir = (dir: string): string => {
  try {
    return realpathSync.native(dir)
  } catch {
    return resolve(dir)
  }
}

const walk = (path: string, from: string, depth: number): string => {
  let current = isAbsolute(path) ? parse(resolve(path)).root : realDir(from)
  for (const part of path.split(/[\\/]+/)) {
    if (part === "" || part === ".") continue
    if (part === "..") {
      current = dirname(current)
      continue
    }
    const next = join(current, part)
    let link: string | undefined
    try {
      link = lstatSync(next).isSymbolicLink() ? readlinkSync(next) : undefined
    } catch {
      link = undefined
    }
    current = link !== undefined && depth < MAX_LINKS ? walk(link, current, depth + 1) : next
  }
  return current
}

/** Device and inode of an existing file, to catch hard links; undefined when it does not exist. */
const identity = (path: string): string | undefined => {
  try {
    const st = statSync(path)
    return st.isFile() ? `${st.dev}:${st.ino}` : undefined
  } catch {
    return undefined
  }
}

const show = (claim: PathClaim): string => `${claim.key} ('${claim.path}')`

const explain = (claim: PathClaim, other: PathClaim, resolved: string): string => {
  const same = `${show(claim)} and ${show(other)} name the same file, ${resolved}`
  const writer = claim.role === "export" ? "the export" : `sink '${claim.sink}'`
  switch (other.role) {
    case "source":
      return `${same}: ${writer} would overwrite the pipeline's input while it is read; write the output elsewhere`
    case "landscape":
      return `${same}: ${writer} would write into the Landscape (the audit database) of this run; write the output elsewhere`
    case "journal":
      return `${same}: ${writer} would write into the Landscape's change journal (landscape.dump_to_jsonl); write the output elsewhere`
    case "sink":
    case "export": {
      const otherWriter = other.role === "export" ? "the export" : `sink '${other.sink}'`
      return `${same}: ${writer} and ${otherWriter} would both write it and lose each other's rows; give each its own path`
    }
  }
}

/**
 * The first conflict among `claims`: a writer (sink or export) naming the same file as
 * an earlier claim of any kind. Claims are checked in order, so list the source and
 * the Landscape first.
 */
export const findPathConflict = (claims: ReadonlyArray<PathClaim>, cwd: string = process.cwd()): PathConflict | undefined => {
  const seen: Array<{ readonly claim: PathClaim; readonly resolved: string; readonly id: string | undefined }> = []
  for (const claim of claims) {
    const resolved = canonicalPath(claim.path, cwd)
    const id = identity(resolved)
    if (claim.role === "sink" || claim.role === "export") {
      const earlier = seen.find((s) =>
        (s.resolved === resolved || (id !== undefined && s.id === id)) &&
        !(s.claim.part !== undefined && claim.part !== undefined && s.claim.part !== claim.part)
      )
      if (earlier !== undefined) {
        return { claim, other: earlier.claim, resolved, message: explain(claim, earlier.claim, resolved) }
      }
    }
    seen.push({ claim, resolved, id })
  }
  return undefined
}
