/**
 * Where the external ELSPETH compatibility corpus is, if anywhere.
 *
 * The corpus (ELSPETH's example settings, inputs and plugin notes) is not part of this
 * repository. It is looked for in `RUNLEDGER_COMPAT_DIR` when that is set, otherwise in
 * `../shared/compat` beside the checkout. Tests that need it run when it is there and
 * are skipped otherwise, with a line on the test output saying what was skipped and why
 * (see `compatSkipNotice`). Nothing else in the suite may depend on it.
 */
import { cpSync, existsSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

const REPO = resolve(__dirname, "../..")

/** The corpus root (holding `elspeth/` and `elspeth-head/`), whether or not it exists. */
export const COMPAT_ROOT = resolve(process.env.RUNLEDGER_COMPAT_DIR ?? join(REPO, "../shared/compat"))

/** The February-2026 ELSPETH corpus: `PLUGINS.md` and `examples/<name>/settings.yaml`. */
export const COMPAT = join(COMPAT_ROOT, "elspeth")

/** Whether the ELSPETH corpus can be used (its examples folder is there). */
export const HAS_COMPAT = existsSync(join(COMPAT, "examples"))

/**
 * Prints, once per test file, why the compat tests of that file are skipped. Call it at
 * the top level of the file, next to `describe.skipIf(!HAS_COMPAT)`; it prints nothing
 * when the corpus is there.
 */
export const compatSkipNotice = (what: string): void => {
  if (HAS_COMPAT) return
  console.warn(
    `skipped: ${what} — the ELSPETH compatibility corpus was not found at ${COMPAT} ` +
      "(set RUNLEDGER_COMPAT_DIR to the folder holding elspeth/ to run them)"
  )
}

/** A writable copy of the ELSPETH corpus (its examples run with it as working directory). */
export const compatCopy = (): string => {
  if (!HAS_COMPAT) throw new Error(`the ELSPETH compatibility corpus is not at ${COMPAT}`)
  const dir = mkdtempSync(join(tmpdir(), "rl-compat-"))
  cpSync(COMPAT, dir, { recursive: true })
  return dir
}
