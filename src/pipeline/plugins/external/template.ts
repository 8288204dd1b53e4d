/**
 * Prompt and body templates in Jinja2 syntax (`{{ row.text }}`), rendered by nunjucks.
 *
 * nunjucks itself is not a sandbox: its member lookup follows prototypes, so
 * `{{ row.constructor.constructor("return process")() }}` would reach Node's globals.
 * Rendering here goes through a lookup that sees only own data properties of plain
 * values (objects, arrays, strings' length and characters), never functions, and the
 * template's names resolve only to what the render was given (`row`, and nothing from
 * the environment's globals). The patch is installed once on nunjucks' runtime module,
 * which every compiled template calls.
 */
import nunjucks from "nunjucks"

export class TemplateError extends Error {}

type Runtime = {
  memberLookup: (obj: unknown, key: unknown) => unknown
  contextOrFrameLookup: (context: { ctx: Record<string, unknown> }, frame: { lookup: (name: string) => unknown }, name: string) => unknown
  __runledgerSandboxed?: boolean
}

const hasOwn = (o: object, key: PropertyKey): boolean => Object.prototype.hasOwnProperty.call(o, key)

/** The value of `obj[key]` when it is plain data; undefined otherwise. */
const safeLookup = (obj: unknown, key: unknown): unknown => {
  if (obj === null || obj === undefined) return undefined
  if (typeof key !== "string" && typeof key !== "number") return undefined
  if (typeof obj === "string") {
    if (key === "length") return obj.length
    return typeof key === "number" || /^\d+$/.test(key) ? obj[Number(key)] : undefined
  }
  if (typeof obj !== "object") return undefined
  if (Array.isArray(obj) && key === "length") return obj.length
  const proto = Object.getPrototypeOf(obj)
  if (proto !== Object.prototype && proto !== null && proto !== Array.prototype) return undefined
  if (!hasOwn(obj, key)) return undefined
  const value = (obj as Record<string | number, unknown>)[key]
  return typeof value === "function" ? undefined : value
}

const sandbox = () => {
  const runtime = (nunjucks as unknown as { runtime: Runtime }).runtime
  if (runtime.__runledgerSandboxed === true) return
  runtime.memberLookup = safeLookup
  runtime.contextOrFrameLookup = (context, frame, name) => {
    const fromFrame = frame.lookup(name)
    if (fromFrame !== undefined) return typeof fromFrame === "function" ? undefined : fromFrame
    return safeLookup(context.ctx, name)
  }
  runtime.__runledgerSandboxed = true
}

const environment = (() => {
  let env: nunjucks.Environment | undefined
  return () => {
    if (env === undefined) {
      sandbox()
      env = new nunjucks.Environment([], { autoescape: false, throwOnUndefined: false })
      // No globals: a template sees only the values it is rendered with.
      ;(env as unknown as { globals: Record<string, unknown> }).globals = Object.create(null)
    }
    return env
  }
})()

export interface CompiledTemplate {
  readonly source: string
  /** Renders with `context`; throws TemplateError with nunjucks' message. */
  readonly render: (context: Record<string, unknown>) => string
}

const firstLine = (e: unknown) => String(e instanceof Error ? e.message : e).split("\n").map((s) => s.trim()).filter((s) => s !== "").join(" ")

/** Compiles `source`; throws TemplateError when it is not a valid template. */
export const compileTemplate = (source: string): CompiledTemplate => {
  let template: nunjucks.Template
  try {
    template = new nunjucks.Template(source, environment(), undefined, true)
  } catch (e) {
    throw new TemplateError(firstLine(e))
  }
  return {
    source,
    render: (context) => {
      try {
        return template.render(context)
      } catch (e) {
        throw new TemplateError(firstLine(e))
      }
    }
  }
}

/** Names of top-level `row.<field>` references in a template (for the start-up field check). */
export const rowFieldsOf = (source: string): ReadonlyArray<string> => {
  const out = new Set<string>()
  for (const m of source.matchAll(/\brow\.([A-Za-z_][A-Za-z0-9_]*)|\brow\[\s*["']([^"']+)["']\s*\]/g)) out.add(m[1] ?? m[2]!)
  return [...out]
}
