/** Facts about a syntax tree known before any row is seen. */
import type { Node } from "./ast.js"

/** The literal `None` (only it may stand beside `is` / `is not`). */
export const isNoneLiteral = (n: Node): boolean => n.k === "const" && n.noneLiteral

/** A row value, the only thing that may be subscripted. */
export const isRowDerived = (n: Node): boolean => n.k === "row" || n.k === "subscript" || n.k === "get"

/** PLUGINS.md 6.3, plus: a call to bool(...) is statically boolean. */
export const isStaticallyBoolean = (n: Node): boolean => {
  switch (n.k) {
    case "compare":
    case "not":
      return true
    case "const":
      return n.value.type === "bool"
    case "boolop":
      return n.operands.every(isStaticallyBoolean)
    case "if":
      return isStaticallyBoolean(n.body) && isStaticallyBoolean(n.orelse)
    case "call":
      return n.fn === "bool"
    default:
      return false
  }
}
