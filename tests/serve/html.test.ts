/**
 * The explorer's HTML building blocks: every interpolated value is escaped (a property
 * over arbitrary strings), nested `html` stays markup, and which hosts count as loopback.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { escapeHtml, href, html, withQuery } from "../../src/serve/html.js"
import { isLoopback } from "../../src/serve/server.js"

describe("html", () => {
  it("escapes every interpolated string so that it reads back as the same text", () => {
    fc.assert(fc.property(fc.string(), (text) => {
      const out = html`<td title="${text}">${text}</td>`.text
      expect(out).toBe(`<td title="${escapeHtml(text)}">${escapeHtml(text)}</td>`)
      expect(escapeHtml(text)).not.toMatch(/[<>"'`]/)
      const decode = (s: string) => s.replace(/&lt;|&gt;|&quot;|&#39;|&#96;|&amp;/g, (e) => ({ "&lt;": "<", "&gt;": ">", "&quot;": "\"", "&#39;": "'", "&#96;": "`", "&amp;": "&" })[e]!)
      expect(decode(escapeHtml(text))).toBe(text)
    }))
  })

  it("keeps nested html as markup and arrays joined; drops null, undefined and false", () => {
    const items = ["<a>", "b"]
    expect(html`<ul>${items.map((i) => html`<li>${i}</li>`)}</ul>${null}${undefined}${false}`.text).toBe("<ul><li>&lt;a&gt;</li><li>b</li></ul>")
    expect(html`${"<script>alert(1)</script>"}`.text).toBe("&lt;script&gt;alert(1)&lt;/script&gt;")
  })

  it("builds paths with encoded segments and queries without empty values", () => {
    expect(href("runs", "a/b c", "rows", 3)).toBe("/runs/a%2Fb%20c/rows/3")
    expect(withQuery("/runs", { status: "failed", kind: undefined, page: "" })).toBe("/runs?status=failed")
  })
})

describe("isLoopback", () => {
  it("accepts 127.0.0.0/8, ::1 and localhost; refuses the rest", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "::ffff:127.0.0.1"]) expect(isLoopback(h), h).toBe(true)
    for (const h of ["0.0.0.0", "::", "192.168.1.4", "10.0.0.1", "example.com", "128.0.0.1"]) expect(isLoopback(h), h).toBe(false)
  })
})
