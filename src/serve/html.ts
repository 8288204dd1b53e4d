/**
 * HTML that is escaped unless it says otherwise: the `html` tag escapes every
 * interpolated value (text, attribute values alike) except the `Html` it builds itself,
 * so a value recorded in the Landscape (a row holding `<script>`) is always text.
 */

const ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  "\"": "&quot;",
  "'": "&#39;",
  "`": "&#96;"
}

export const escapeHtml = (text: string): string => text.replace(/[&<>"'`]/g, (c) => ESCAPES[c]!)

/** Markup that is already safe. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text
  }
}

type Part = Html | string | number | boolean | null | undefined | ReadonlyArray<Part>

const render = (value: Part): string => {
  if (value === null || value === undefined || value === false) return ""
  if (value instanceof Html) return value.text
  if (Array.isArray(value)) return value.map(render).join("")
  return escapeHtml(String(value))
}

export const html = (strings: TemplateStringsArray, ...values: ReadonlyArray<Part>): Html => {
  let out = strings[0] ?? ""
  values.forEach((v, i) => {
    out += render(v) + (strings[i + 1] ?? "")
  })
  return new Html(out)
}

/** Trusted markup made here (the SVG the layout draws from escaped parts). */
export const raw = (text: string): Html => new Html(text)

/** A URL path with each segment percent-encoded. */
export const href = (...segments: ReadonlyArray<string | number>): string =>
  "/" + segments.map((s) => encodeURIComponent(String(s))).join("/")

/** `path?k=v&…` without the empty values. */
export const withQuery = (path: string, query: Readonly<Record<string, string | number | undefined | null>>): string => {
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, String(v))
  const text = params.toString()
  return text === "" ? path : `${path}?${text}`
}
