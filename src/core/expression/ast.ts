/** The syntax tree of a parsed expression. */
import type { PyValue } from "./values.js"

export type CmpOp = "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in" | "is" | "is not"
export type ArithOp = "+" | "-" | "*" | "/" | "//" | "%"
export type Builtin = "len" | "str" | "int" | "float" | "bool" | "abs"
export const BUILTINS: ReadonlySet<string> = new Set<Builtin>(["len", "str", "int", "float", "bool", "abs"])

export type Node =
  | { readonly k: "const"; readonly value: PyValue; readonly noneLiteral: boolean }
  | { readonly k: "row" }
  | { readonly k: "seq"; readonly type: "list" | "tuple" | "set"; readonly items: ReadonlyArray<Node> }
  | { readonly k: "dict"; readonly keys: ReadonlyArray<Node>; readonly values: ReadonlyArray<Node> }
  | { readonly k: "subscript"; readonly target: Node; readonly index: Node }
  | { readonly k: "get"; readonly key: Node; readonly fallback: Node | undefined }
  | { readonly k: "call"; readonly fn: Builtin; readonly arg: Node }
  | { readonly k: "unary"; readonly op: "-" | "+"; readonly operand: Node }
  | { readonly k: "not"; readonly operand: Node }
  | { readonly k: "arith"; readonly first: Node; readonly rest: ReadonlyArray<readonly [ArithOp, Node]> }
  | { readonly k: "boolop"; readonly op: "and" | "or"; readonly operands: ReadonlyArray<Node> }
  | { readonly k: "compare"; readonly first: Node; readonly rest: ReadonlyArray<readonly [CmpOp, Node]> }
  | { readonly k: "if"; readonly test: Node; readonly body: Node; readonly orelse: Node }
