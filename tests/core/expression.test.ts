import { Either } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  type CompiledExpression,
  EXPRESSION_LIMITS,
  evaluateExpression,
  ExpressionEvalError,
  ExpressionParseError,
  isTruthy,
  parseExpression,
  py,
  type PyValue,
  routeLabel,
  RowFloat,
  toJs
} from "../../src/core/expression/index.js"

// ---------------------------------------------------------------------------
// helpers

const compile = (source: string): CompiledExpression => {
  const parsed = parseExpression(source)
  if (Either.isLeft(parsed)) throw new Error(`unexpected parse error: ${parsed.left.message}`)
  return parsed.right
}

const run = (source: string, row: unknown = ROW): PyValue => {
  const result = evaluateExpression(compile(source), row)
  if (Either.isLeft(result)) throw new Error(`unexpected evaluation error: ${result.left.message}`)
  return result.right
}

const parseFailure = (source: string): ExpressionParseError => {
  const parsed = parseExpression(source)
  if (Either.isRight(parsed)) throw new Error(`expected a parse error for ${JSON.stringify(source)}`)
  return parsed.left
}

const evalFailure = (source: string, row: unknown = ROW): ExpressionEvalError => {
  const result = evaluateExpression(compile(source), row)
  if (Either.isRight(result)) {
    throw new Error(`expected an evaluation error for ${source}, got ${routeLabel(result.right)}`)
  }
  return result.left
}

const ROW = {
  id: 7,
  name: "Zoë",
  amount: 1500,
  price: 2.5,
  tags: ["a", "b"],
  nested: { k: [1, 2, { z: null }] },
  flag: true,
  none: null,
  empty: "",
  neg: -7
}

// ---------------------------------------------------------------------------
// Python semantics: [expression, Python type, Python str() / route label].
// Every expected value was produced by CPython 3.11 evaluating the same
// expression with `row` bound to ROW (json.loads of the same data).

const PYTHON_RESULTS: Record<string, ReadonlyArray<readonly [string, string, string]>> = {
  "literals": [
    ["42", "int", "42"],
    ["1_000", "int", "1000"],
    ["0x1F", "int", "31"],
    ["0o17", "int", "15"],
    ["0b101", "int", "5"],
    ["1.5", "float", "1.5"],
    [".5", "float", "0.5"],
    ["5.", "float", "5.0"],
    ["1e3", "float", "1000.0"],
    ["1.5e-7", "float", "1.5e-07"],
    ["1e16", "float", "1e+16"],
    ["1e400", "float", "inf"],
    ["True", "bool", "true"],
    ["False", "bool", "false"],
    ["None", "NoneType", "None"],
    ["'single'", "str", "single"],
    ["\"double\"", "str", "double"],
    ["'it\\'s'", "str", "it's"],
    ["\"say \\\"hi\\\"\"", "str", "say \"hi\""],
    ["'tab\\there'", "str", "tab\there"],
    ["'a\\\\b'", "str", "a\\b"],
    ["'\\x41\\u00e9\\U0001F600'", "str", "Aé😀"],
    ["'\\101'", "str", "A"],
    ["'\\d'", "str", "\\d"],
    ["r'\\n'", "str", "\\n"],
    ["'con' \"cat\" '''enated'''", "str", "concatenated"],
    ["[1, 'a', None]", "list", "[1, 'a', None]"],
    ["(1,)", "tuple", "(1,)"],
    ["()", "tuple", "()"],
    ["(1, 2)", "tuple", "(1, 2)"],
    ["{'a': 1, 'b': [1, 2.0]}", "dict", "{'a': 1, 'b': [1, 2.0]}"],
    ["{1, 2, 2}", "set", "{1, 2}"],
    ["{1: 'a', True: 'b', 1.0: 'c'}", "dict", "{1: 'c'}"],
    ["{}", "dict", "{}"],
    ["[]", "list", "[]"],
    ["1, 2", "tuple", "(1, 2)"],
  ],
  "int and float arithmetic": [
    ["7 // 2", "int", "3"],
    ["7 / 2", "float", "3.5"],
    ["-7 // 2", "int", "-4"],
    ["-7 % 2", "int", "1"],
    ["7 % -2", "int", "-1"],
    ["-7 % -2", "int", "-1"],
    ["7.0 // 2", "float", "3.0"],
    ["-7.0 // 2", "float", "-4.0"],
    ["7.5 % 2", "float", "1.5"],
    ["-7.5 % 2", "float", "0.5"],
    ["7.5 % -2", "float", "-0.5"],
    ["-0.5 // 1", "float", "-1.0"],
    ["0.1 + 0.2", "float", "0.30000000000000004"],
    ["2 - 3 * 4", "int", "-10"],
    ["(2 - 3) * 4", "int", "-4"],
    ["10 - 2 - 3", "int", "5"],
    ["100 / 10 / 5", "float", "2.0"],
    ["2 * 3 % 4", "int", "2"],
    ["6 / 3", "float", "2.0"],
    ["1 + 1.0", "float", "2.0"],
    ["True + True", "int", "2"],
    ["True * 1.5", "float", "1.5"],
    ["-True", "int", "-1"],
    ["+True", "int", "1"],
    ["- - 1", "int", "1"],
    ["-3 // 2", "int", "-2"],
    ["123456789012345678901234567890 // 7", "int", "17636684144620811271604938270"],
    ["-123456789012345678901234567890 % 7", "int", "0"],
    ["9007199254740993 / 1", "float", "9007199254740992.0"],
    ["10000000000000000000000 / 7", "float", "1.4285714285714287e+21"],
    ["1e308 * 10", "float", "inf"],
  ],
  "strings, lists, tuples, sets": [
    ["'a' + 'b'", "str", "ab"],
    ["'ab' * 3", "str", "ababab"],
    ["3 * 'ab'", "str", "ababab"],
    ["'ab' * -1", "str", ""],
    ["'ab' * True", "str", "ab"],
    ["[1] + [2]", "list", "[1, 2]"],
    ["[1, 2] * 2", "list", "[1, 2, 1, 2]"],
    ["(1,) + (2,)", "tuple", "(1, 2)"],
    ["{1, 2, 3} - {2}", "set", "{1, 3}"],
  ],
  "comparisons": [
    ["1 == 1.0", "bool", "true"],
    ["True == 1", "bool", "true"],
    ["1 == '1'", "bool", "false"],
    ["[1, 2] == [1, 2.0]", "bool", "true"],
    ["[1] == (1,)", "bool", "false"],
    ["{1: 'a'} == {1.0: 'a'}", "bool", "true"],
    ["{1, 2} == {2, 1}", "bool", "true"],
    ["None == None", "bool", "true"],
    ["None == 0", "bool", "false"],
    ["1 != 2", "bool", "true"],
    ["1 < 2 < 3", "bool", "true"],
    ["1 < 3 < 2", "bool", "false"],
    ["3 > 2 == 2", "bool", "true"],
    ["1 < 2 > 1", "bool", "true"],
    ["'Z' < 'a'", "bool", "true"],
    ["'\\uffff' < '\\U0001F600'", "bool", "true"],
    ["[1, 2] < [1, 3]", "bool", "true"],
    ["[1, 2] < [1, 2, 0]", "bool", "true"],
    ["(1, 'a') < (1, 'b')", "bool", "true"],
    ["{1} < {1, 2}", "bool", "true"],
    ["{1, 2} <= {1, 2}", "bool", "true"],
    ["1 < 1.5", "bool", "true"],
    ["True < 2", "bool", "true"],
    ["9007199254740993 == 9007199254740992.0", "bool", "false"],
    ["9007199254740993 > 9007199254740992.0", "bool", "true"],
    ["'ell' in 'hello'", "bool", "true"],
    ["'x' not in 'hello'", "bool", "true"],
    ["'' in ''", "bool", "true"],
    ["1 in [1, 2]", "bool", "true"],
    ["1.0 in [1, 2]", "bool", "true"],
    ["'a' in {'a': 1}", "bool", "true"],
    ["1 in {'1': 1}", "bool", "false"],
    ["(1, 2) in {(1, 2): 0}", "bool", "true"],
    ["True in {1}", "bool", "true"],
    ["None is None", "bool", "true"],
    ["1 is not None", "bool", "true"],
    ["None is not None", "bool", "false"],
  ],
  "boolean operators and conditionals": [
    ["0 and 1", "int", "0"],
    ["1 and 2", "int", "2"],
    ["0 or ''", "str", ""],
    ["'' or 'x'", "str", "x"],
    ["[] or None", "NoneType", "None"],
    ["1 and [] or 'z'", "str", "z"],
    ["not 0", "bool", "true"],
    ["not 'a'", "bool", "false"],
    ["not 1 == 2", "bool", "true"],
    ["1 or 2 and 0", "int", "1"],
    ["'a' if 1 else 'b'", "str", "a"],
    ["'a' if [] else 'b'", "str", "b"],
    ["1 if 0 else 2 if 0 else 3", "int", "3"],
  ],
  "calls": [
    ["len('Zoë')", "int", "3"],
    ["len('\\U0001F600a')", "int", "2"],
    ["len([1, 2, 3])", "int", "3"],
    ["len({1: 2})", "int", "1"],
    ["len((1,))", "int", "1"],
    ["len({1, 2, 2})", "int", "2"],
    ["str(2.0)", "str", "2.0"],
    ["str(True)", "str", "True"],
    ["str(None)", "str", "None"],
    ["str(1e16)", "str", "1e+16"],
    ["str(1e-5)", "str", "1e-05"],
    ["str(0.0001)", "str", "0.0001"],
    ["str(-0.0)", "str", "-0.0"],
    ["str(1 / 3)", "str", "0.3333333333333333"],
    ["str([1, 'a'])", "str", "[1, 'a']"],
    ["str([\"it's\", 'a\"b'])", "str", "[\"it's\", 'a\"b']"],
    ["str(['\\n\\t\\\\', '\\x00\\x7f\\x80\\xa0', '\\u200b'])", "str", "['\\n\\t\\\\', '\\x00\\x7f\\x80\\xa0', '\\u200b']"],
    ["str((1,))", "str", "(1,)"],
    ["str({1, 2})", "str", "{1, 2}"],
    ["int('42')", "int", "42"],
    ["int(' +7 ')", "int", "7"],
    ["int('1_000')", "int", "1000"],
    ["int('00042')", "int", "42"],
    ["int('-0')", "int", "0"],
    ["int(3.9)", "int", "3"],
    ["int(-3.9)", "int", "-3"],
    ["int(True)", "int", "1"],
    ["int('\\u0661\\u0662')", "int", "12"],
    ["int('\\u3000\\x8542\\xa0')", "int", "42"],
    ["float('\\u2028 1.5\\u3000')", "float", "1.5"],
    ["float('1.5')", "float", "1.5"],
    ["float('.5')", "float", "0.5"],
    ["float(' 1e3 ')", "float", "1000.0"],
    ["float('1_000.5')", "float", "1000.5"],
    ["float('-inf')", "float", "-inf"],
    ["float('nan')", "float", "nan"],
    ["float(2)", "float", "2.0"],
    ["bool([])", "bool", "false"],
    ["bool([0])", "bool", "true"],
    ["bool('')", "bool", "false"],
    ["bool(0.0)", "bool", "false"],
    ["bool(float('nan'))", "bool", "true"],
    ["abs(-3)", "int", "3"],
    ["abs(-3.5)", "float", "3.5"],
    ["abs(True)", "int", "1"],
  ],
  "row access": [
    ["row['id']", "int", "7"],
    ["row['name']", "str", "Zoë"],
    ["row['price']", "float", "2.5"],
    ["row['tags']", "list", "['a', 'b']"],
    ["row['tags'][0]", "str", "a"],
    ["row['tags'][-1]", "str", "b"],
    ["row['nested']['k'][2]['z']", "NoneType", "None"],
    ["row['name'][1]", "str", "o"],
    ["row['name'][-1]", "str", "ë"],
    ["row.get('missing')", "NoneType", "None"],
    ["row.get('missing', 'dflt')", "str", "dflt"],
    ["row.get('name')[0]", "str", "Z"],
    ["row.get('id', 0) + 1", "int", "8"],
    ["row['amount'] > 1000", "bool", "true"],
    ["row['amount'] >= 1500.0", "bool", "true"],
    ["row['price'] * 2", "float", "5.0"],
    ["row['price'] // 1", "float", "2.0"],
    ["row['neg'] // 2", "int", "-4"],
    ["row['neg'] % 3", "int", "2"],
    ["row['flag'] == True", "bool", "true"],
    ["row['flag'] + 1", "int", "2"],
    ["row['none'] is None", "bool", "true"],
    ["row['empty'] or 'blank'", "str", "blank"],
    ["str(row['price'])", "str", "2.5"],
    ["str(row['tags'])", "str", "['a', 'b']"],
    ["str(row['nested'])", "str", "{'k': [1, 2, {'z': None}]}"],
    ["len(row)", "int", "10"],
    ["'name' in row", "bool", "true"],
    ["'zzz' in row", "bool", "false"],
    ["row['tags'] == ['a', 'b']", "bool", "true"],
    ["row['amount'] + row['price']", "float", "1502.5"],
    ["row['name'] + '!'", "str", "Zoë!"],
    ["row['id'] if row['flag'] else row['name']", "int", "7"],
    ["{row['name']: row['id']}", "dict", "{'Zoë': 7}"],
    ["[1, 2] + row['tags']", "list", "[1, 2, 'a', 'b']"],
    ["(row)['id']", "int", "7"],
    ["(row['tags'])[0]", "str", "a"],
    ["ｒｏｗ['id']", "int", "7"],
  ],
}

describe("Python semantics", () => {
  for (const [group, cases] of Object.entries(PYTHON_RESULTS)) {
    describe(group, () => {
      it.each(cases)("%s → %s %s", (source, type, label) => {
        const value = run(source)
        expect(value.type).toBe(type)
        expect(routeLabel(value)).toBe(label)
      })
    })
  }

  it("keeps int and float apart and ints exact", () => {
    expect(run("7 // 2")).toEqual(py.int(3))
    expect(run("7.0 // 2")).toEqual(py.float(3))
    expect(run("7 / 7")).toEqual(py.float(1))
    expect(run("2 * 3")).toEqual(py.int(6))
    expect(run("99999999999999999999 + 1")).toEqual(py.int(100000000000000000000n))
    expect(run("-7 % 2")).toEqual(py.int(1))
    expect(Object.is((run("-0.5 // 1") as { value: number }).value, -1)).toBe(true)
    expect(Object.is((run("0.0 * -1") as { value: number }).value, -0)).toBe(true)
  })

  it("line continuation, multi-line brackets and comments", () => {
    expect(routeLabel(run("'a\\\nb'"))).toBe("ab")
    expect(run("1 + \\\n 2")).toEqual(py.int(3))
    expect(run("(1 +\n 2)")).toEqual(py.int(3))
    expect(run("[1,\r\n 2]")).toEqual(py.list([py.int(1), py.int(2)]))
    expect(run("'''a\nb'''")).toEqual(py.str("a\nb"))
    expect(run("row['id'] # the id\n")).toEqual(py.int(7))
    expect(run("\n\nrow['id']\n\n")).toEqual(py.int(7))
    expect(run("1if True else 2")).toEqual(py.int(1))
  })

  it("and/or return an operand and short-circuit", () => {
    expect(run("row['none'] or row['name']")).toEqual(py.str("Zoë"))
    expect(run("row['empty'] and row['missing']")).toEqual(py.str(""))
    expect(run("row['flag'] or row['missing']")).toEqual(py.bool(true))
    expect(run("row['id'] if True else row['missing']")).toEqual(py.int(7))
    expect(run("1 > 2 > row['missing']")).toEqual(py.bool(false))
  })

  it("evaluates each operand of a chained comparison once, left to right", () => {
    expect(evalFailure("1 < row['missing'] < 3").message).toContain("KeyError: 'missing'")
    expect(run("row.get('a', 1) < 2 <= 2.0 == 2")).toEqual(py.bool(true))
  })
})

// ---------------------------------------------------------------------------

describe("evaluation errors", () => {
  it.each([
    ["row['amount'] < 'x'", "cannot compare int with str using '<'"],
    ["'a' < 1", "cannot compare str with int using '<'"],
    ["row['none'] >= 1", "cannot compare NoneType with int using '>='"],
    ["[1] < (1,)", "cannot compare list with tuple using '<'"],
    ["{} < {}", "cannot compare dict with dict using '<'"],
    ["1 / 0", "ZeroDivisionError"],
    ["1 // 0", "ZeroDivisionError"],
    ["1 % 0", "ZeroDivisionError"],
    ["1.0 / 0", "ZeroDivisionError"],
    ["1.0 // 0.0", "ZeroDivisionError"],
    ["1 % 0.0", "ZeroDivisionError"],
    ["row['id'] / (row['neg'] + 7)", "ZeroDivisionError"],
    ["row['missing']", "KeyError: 'missing' is not in the row (keys: id, name, amount, price, tags, nested, flag, none, empty, neg)"],
    ["row['nested']['x']", "KeyError: 'x' is not in the dict (keys: k)"],
    ["row[1]", "KeyError: 1 is not in the row"],
    ["row['tags'][2]", "IndexError: list index 2 out of range (length 2)"],
    ["row['tags'][-3]", "IndexError: list index -3 out of range (length 2)"],
    ["row['name'][3]", "IndexError: str index 3 out of range (length 3)"],
    ["row['tags']['a']", "TypeError: list indices must be integers, not str"],
    ["row['tags'][1.0]", "TypeError: list indices must be integers, not float"],
    ["row['id'][0]", "TypeError: 'int' object is not subscriptable"],
    ["row.get('missing')[0]", "TypeError: 'NoneType' object is not subscriptable"],
    ["row[['x']]", "TypeError: unhashable type: 'list'"],
    ["{row['tags']}", "TypeError: unhashable type: 'list'"],
    ["{row['nested']: 1}", "TypeError: unhashable type: 'dict'"],
    ["[1] in {1: 2}", "TypeError: unhashable type: 'list'"],
    ["1 in 'abc'", "TypeError: 'in <string>' requires a string as left operand, not int"],
    ["1 in 5", "TypeError: argument of type 'int' is not iterable"],
    ["'a' + 1", "TypeError: can only concatenate str (not \"int\") to str"],
    ["1 + 'a'", "TypeError: unsupported operand type(s) for +: 'int' and 'str'"],
    ["[1] + (1,)", "TypeError: can only concatenate list (not \"tuple\") to list"],
    ["None + 1", "TypeError: unsupported operand type(s) for +: 'NoneType' and 'int'"],
    ["'ab' * 2.0", "TypeError: can't multiply sequence by non-int of type 'float'"],
    ["'%s' % 1", "printf-style string formatting"],
    ["-'a'", "TypeError: bad operand type for unary -: 'str'"],
    ["len(5)", "TypeError: object of type 'int' has no len()"],
    ["abs('a')", "TypeError: bad operand type for abs(): 'str'"],
    ["int('4.0')", "ValueError: invalid literal for int() with base 10: '4.0'"],
    ["int('')", "ValueError: invalid literal for int() with base 10: ''"],
    ["int('\\x1c42')", "ValueError: invalid literal for int() with base 10: '\\x1c42'"],
    ["float('1.5\\x1f')", "ValueError: could not convert string to float: '1.5\\x1f'"],
    ["int([1])", "TypeError: int() argument must be a string or a real number, not 'list'"],
    ["int(float('nan'))", "ValueError: cannot convert float NaN to integer"],
    ["int(float('inf'))", "OverflowError: cannot convert float infinity to integer"],
    ["float('abc')", "ValueError: could not convert string to float: 'abc'"],
    ["float('1,5')", "ValueError: could not convert string to float: '1,5'"],
    ["float(None)", "TypeError: float() argument must be a string or a real number, not 'NoneType'"],
    ["float(int('9' * 400))", "OverflowError: int too large to convert to float"],
    ["str(int('9' * 4300) * 10)", "ValueError: Exceeds the limit (4300 digits) for integer string conversion"],
    ["int('9' * 4301)", "ValueError: Exceeds the limit (4300 digits)"],
    ["'x' * 100000000", "MemoryError"],
    ["[0] * 100000000", "MemoryError"]
  ])("%s fails with %s", (source, message) => {
    const error = evalFailure(source)
    expect(error).toBeInstanceOf(ExpressionEvalError)
    expect(error._tag).toBe("ExpressionEvalError")
    expect(error.expression).toBe(source)
    expect(error.message).toContain(message)
  })

  it("compiled.evaluate throws only ExpressionEvalError", () => {
    const compiled = compile("row['x'] + 1")
    expect(() => compiled.evaluate({ x: "a" })).toThrow(ExpressionEvalError)
    expect(() => compiled.evaluate({})).toThrow(/KeyError: 'x' is not in the row \(it is empty\)/)
    expect(compiled.evaluate({ x: 1 })).toEqual(py.int(2))
  })

  it("row.get needs a dict row", () => {
    expect(evalFailure("row.get('a')", [1, 2]).message).toContain("AttributeError")
    expect(run("row[1]", [1, 2])).toEqual(py.int(2))
  })

  it("stops runaway work with a step budget", () => {
    const message = evalFailure("[[0] * 1000] * 1000 == [[0] * 1000] * 1000 == [[0] * 1000] * 1000 == [[0] * 1000] * 1000 == [[0] * 1000] * 1000 == [[0] * 1000] * 1000 == [[0] * 1000] * 1000 == [[0] * 1000] * 1000 == [[0] * 1000] * 1000 == [[0] * 1000] * 1000 == [[0] * 1000] * 1000 == [[0] * 1000] * 1000").message
    expect(message).toContain("too expensive")
    expect(message).toContain(String(EXPRESSION_LIMITS.maxSteps))
  })
})

// ---------------------------------------------------------------------------

describe("rejected at parse time, with the column of the problem", () => {
  it.each([
    ["batch_count >= 3", 1, "unknown name 'batch_count' at column 1; only row, True, False, None are allowed (write row['batch_count']"],
    ["row['a'] > 1 and batch", 18, "unknown name 'batch'"],
    ["__import__('os')", 1, "unknown name '__import__'"],
    ["true", 1, "did you mean True?"],
    ["null", 1, "did you mean None?"],
    ["min(row['a'], 1)", 1, "unknown name 'min'"],
    ["len", 1, "'len' can only be called"],
    ["len(1, 2)", 1, "len() takes exactly one argument (2 given)"],
    ["str()", 1, "str() takes exactly one argument (0 given)"],
    ["row.keys()", 5, "attribute '.keys' is not allowed"],
    ["row.__class__", 5, "attribute '.__class__' is not allowed"],
    ["row['a'].constructor", 10, "attribute '.constructor' is not allowed"],
    ["x.constructor", 1, "unknown name 'x'"],
    ["row['a'].get('b')", 10, "attribute '.get' is not allowed"],
    ["row.get", 5, "row.get must be called"],
    ["(row.get)('a')", 6, "row.get must be called"],
    ["row.get()", 5, "row.get() takes 1 or 2 arguments (0 given)"],
    ["row.get('a', 1, 2)", 5, "row.get() takes 1 or 2 arguments (3 given)"],
    ["row.get(key='a')", 9, "keyword arguments are not allowed"],
    ["len(*row)", 5, "starred arguments"],
    ["bool(**row)", 6, "keyword unpacking"],
    ["row()", 4, "this call is not allowed"],
    ["row['f'](1)", 9, "this call is not allowed"],
    ["row ** 2", 5, "operator '**' (power) is not allowed"],
    ["row['a'] & 1", 10, "bitwise operator '&'"],
    ["row['a'] | 1", 10, "bitwise operator '|'"],
    ["row['a'] ^ 1", 10, "bitwise operator '^'"],
    ["row['a'] << 1", 10, "bitwise operator '<<'"],
    ["row['a'] >> 1", 10, "bitwise operator '>>'"],
    ["~row['a']", 1, "bitwise operator '~'"],
    ["row['a'] @ row['b']", 10, "'@' (matrix multiplication)"],
    ["lambda: 1", 1, "lambda expressions are not allowed"],
    ["[row for r in row]", 6, "comprehensions and generator expressions are not allowed"],
    ["len(row['a'] for r in row)", 14, "comprehensions"],
    ["{row['a']: 1 for r in row}", 14, "comprehensions"],
    ["(row := 1)", 6, "assignment expressions (:=) are not allowed"],
    ["row['a'] = 1", 10, "'=' (assignment) is not allowed at column 10; use '==' to compare"],
    ["row['a'] += 1", 10, "assignment ('+=') is not allowed"],
    ["f'{row}'", 1, "f-strings are not allowed"],
    ["'a' F'b'", 5, "f-strings are not allowed"],
    ["b'abc'", 1, "bytes literals"],
    ["rb'abc'", 1, "bytes literals"],
    ["1j", 1, "complex"],
    ["...", 1, "Ellipsis"],
    ["await row", 1, "'await' is not allowed"],
    ["(yield)", 2, "'yield' is not allowed"],
    ["[*row]", 2, "starred expressions"],
    ["*row, 1", 1, "starred expressions"],
    ["{**row}", 2, "dict unpacking (**) is not allowed"],
    ["row['a'][1:2]", 11, "slices are not allowed"],
    ["row[::2]", 5, "slices are not allowed"],
    ["'abc'[0]", 6, "subscripts are only allowed on row values"],
    ["[1, 2][0]", 7, "subscripts are only allowed on row values"],
    ["str(row)[0]", 9, "subscripts are only allowed on row values"],
    ["row is 1", 5, "'is' is only allowed with None"],
    ["1 is not row", 3, "'is not' is only allowed with None"],
    ["row['a'] == 1 x", 15, "expected the end of the expression but found 'x' at column 15"],
    ["row['a'] == 1)", 14, "found ')'"],
    ["(row['a'] == 1", 15, "expected ',' or ')' but found the end of the expression"],
    ["row['a'] ==", 12, "expected a value"],
    ["1 if row['a']", 14, "expected 'else'"],
    ["row['a'] ==\n1", 12, "unexpected line break"],
    ["row['a'] ; 1", 10, "';' is not allowed"],
    ["row['a'] $ 1", 10, "invalid character '$'"],
    ["row['a'] == 1\u00a0", 14, "invalid non-printable character U+00A0"],
    ["row['a'] \\ 1", 10, "line continuation"],
    [" row['a']", 1, "unexpected indent"],
    ["'abc", 1, "unterminated string literal"],
    ["row['a'] == 'x\n'", 13, "unterminated string literal"],
    ["'''abc", 1, "unterminated triple-quoted string literal"],
    ["'\\x4'", 2, "truncated \\x escape"],
    ["'ab\\u12'", 4, "truncated \\u escape"],
    ["'\\U00110000'", 2, "illegal Unicode character"],
    ["'\\N{DASH}'", 2, "\\N{...} escapes are not supported"],
    ["01", 1, "leading zeros"],
    ["1__0", 1, "invalid decimal literal"],
    ["1_", 1, "invalid decimal literal"],
    ["1abc", 1, "invalid decimal literal"],
    ["0x", 1, "invalid hexadecimal literal"],
    ["0b12", 1, "invalid binary literal"],
    ["", 1, "the expression is empty"],
    ["'é' == batch", 8, "unknown name 'batch'"],
    ["'😀' == x", 8, "unknown name 'x' at column 8"],
    ["row['a'] == 1 and\0", 18, "NUL"]
  ])("%j at column %i", (source, column, message) => {
    const error = parseFailure(source)
    expect(error).toBeInstanceOf(ExpressionParseError)
    expect(error._tag).toBe("ExpressionParseError")
    expect(error.expression).toBe(source)
    expect(error.column).toBe(column)
    expect(error.message).toContain(message)
    expect(error.message).toContain(`at column ${column}`)
  })

  it("guards nesting depth and length instead of overflowing the stack", () => {
    for (const source of [
      "(".repeat(10_000),
      "[".repeat(5_000) + "]".repeat(5_000),
      "-".repeat(9_999) + "1",
      "not ".repeat(2_000) + "1",
      "row" + "[0]".repeat(3_000),
      "len(".repeat(1_500) + "1" + ")".repeat(1_500),
      "1 if 1 else ".repeat(800) + "1"
    ]) {
      const error = parseFailure(source)
      expect(error.message).toMatch(/nested too deeply|too long/)
    }
    expect(parseFailure("(".repeat(10_000)).column).toBe(EXPRESSION_LIMITS.maxNesting + 1)
    const tooLong = parseFailure("1".repeat(EXPRESSION_LIMITS.maxSourceLength + 1))
    expect(tooLong.message).toContain("too long")
    // Just inside the limits still works.
    const depth = EXPRESSION_LIMITS.maxNesting - 1
    expect(run("(".repeat(depth) + "1" + ")".repeat(depth))).toEqual(py.int(1))
    expect(run("1+".repeat(4_999) + "1")).toEqual(py.int(5_000))
    expect(run("1 < ".repeat(2_000) + "2001")).toEqual(py.bool(false))
  })
})

// ---------------------------------------------------------------------------

describe("statically boolean (6.3)", () => {
  it.each([
    ["row['a'] == 1", true],
    ["1 < row['a'] < 3", true],
    ["'x' in row", true],
    ["row['a'] is None", true],
    ["not row['a']", true],
    ["True", true],
    ["False", true],
    ["row['a'] > 1 and row['b'] < 2", true],
    ["row['a'] > 1 or not row['b']", true],
    ["row['a'] > 1 if row['c'] else row['b'] < 2", true],
    ["(row['a'] == 1)", true],
    ["bool(row['a'])", true],
    ["row['category']", false],
    ["row.get('f') or 'x'", false],
    ["row['a'] > 1 and row['b']", false],
    ["row['a'] if row['c'] else row['b'] < 2", false],
    ["row['a'] == 1 if row['c'] else 'x'", false],
    ["None", false],
    ["1", false],
    ["'true'", false],
    ["row['a'] == 1, True", false],
    ["len(row) > 0", true],
    ["len(row)", false],
    ["str(row['a'] == 1)", false],
    ["-(row['a'] == 1)", false]
  ])("%s → %s", (source, expected) => {
    expect(compile(source).isStaticallyBoolean).toBe(expected)
  })
})

// ---------------------------------------------------------------------------

describe("route labels (6.1) and truthiness", () => {
  it("uses true/false, the string itself, else Python str()", () => {
    expect(routeLabel(py.bool(true))).toBe("true")
    expect(routeLabel(py.bool(false))).toBe("false")
    expect(routeLabel(py.str("Corporate"))).toBe("Corporate")
    expect(routeLabel(py.str(""))).toBe("")
    expect(routeLabel(py.int(1))).toBe("1")
    expect(routeLabel(py.int(-12345678901234567890n))).toBe("-12345678901234567890")
    expect(routeLabel(py.none)).toBe("None")
    expect(routeLabel(py.float(2))).toBe("2.0")
    expect(routeLabel(py.float(1e16))).toBe("1e+16")
    expect(routeLabel(py.float(Number.NaN))).toBe("nan")
    expect(routeLabel(py.float(Number.NEGATIVE_INFINITY))).toBe("-inf")
    expect(routeLabel(py.list([py.int(1), py.str("a")]))).toBe("[1, 'a']")
    expect(routeLabel(py.tuple([py.bool(true)]))).toBe("(True,)")
    expect(routeLabel(run("{'a': None, 'b': (1, 2.5)}"))).toBe("{'a': None, 'b': (1, 2.5)}")
    expect(routeLabel(run("{1} - {1}"))).toBe("set()")
    expect(routeLabel(run("row['category']", { category: "retail" }))).toBe("retail")
    expect(routeLabel(run("row['score'] > 3", { score: 4 }))).toBe("true")
  })

  it("follows Python truthiness", () => {
    const falsy = ["None", "False", "0", "0.0", "-0.0", "''", "[]", "()", "{}", "{1} - {1}"]
    const truthy = ["True", "1", "-1", "0.1", "float('nan')", "' '", "[0]", "(None,)", "{0: 0}", "{0}"]
    for (const source of falsy) expect(isTruthy(run(source)), source).toBe(false)
    for (const source of truthy) expect(isTruthy(run(source)), source).toBe(true)
  })
})

// ---------------------------------------------------------------------------

describe("row data", () => {
  it("treats integral JS numbers as int, others as float, RowFloat as float", () => {
    expect(run("row['a']", { a: 3 })).toEqual(py.int(3))
    expect(run("row['a']", { a: 3.5 })).toEqual(py.float(3.5))
    expect(routeLabel(run("row['a']", { a: new RowFloat(3) }))).toBe("3.0")
    expect(run("row['a'] / 2", { a: new RowFloat(3) })).toEqual(py.float(1.5))
    expect(run("row['a'] // 2", { a: new RowFloat(3) })).toEqual(py.float(1))
    expect(run("row['a']", { a: 12345678901234567890n })).toEqual(py.int(12345678901234567890n))
    expect(run("row['a'] is None", { a: undefined })).toEqual(py.bool(true))
    expect(run("row['a'][1] is None", { a: [1, null] })).toEqual(py.bool(true))
  })

  it("rejects values that are not JSON-like, and rows nested too deeply", () => {
    expect(evalFailure("row['a']", { a: new Date(0) }).message).toContain("unsupported type Date")
    expect(evalFailure("row['a']", { a: () => 1 }).message).toContain("unsupported type function")
    let deep: unknown = 1
    for (let i = 0; i < EXPRESSION_LIMITS.maxRowDepth + 5; i++) deep = [deep]
    expect(evalFailure("len(row)", { deep }).message).toContain("nested too deeply")
    // An expression that never reads the row does not look at it.
    expect(run("1 + 1", { a: new Date(0) })).toEqual(py.int(2))
  })

  it("treats __proto__, constructor and toString as plain keys", () => {
    const empty = {}
    expect(evalFailure("row['__proto__']", empty).message).toContain("KeyError: '__proto__' is not in the row")
    expect(evalFailure("row['constructor']", empty).message).toContain("KeyError: 'constructor'")
    expect(evalFailure("row['toString']", empty).message).toContain("KeyError: 'toString'")
    expect(evalFailure("row['hasOwnProperty']", empty).message).toContain("KeyError")
    expect(run("row.get('constructor')", empty)).toEqual(py.none)
    expect(run("row.get('__proto__', 'none')", empty)).toEqual(py.str("none"))
    expect(run("'constructor' in row or '__proto__' in row or 'toString' in row", empty)).toEqual(py.bool(false))
    expect(run("len(row)", empty)).toEqual(py.int(0))
    expect(evalFailure("row['tags']['length']").message).toContain("list indices must be integers")
    expect(evalFailure("row['name']['length']").message).toContain("str indices must be integers")

    const hostile = JSON.parse("{\"__proto__\": {\"polluted\": 1}, \"constructor\": \"c\"}") as unknown
    expect(routeLabel(run("row['__proto__']", hostile))).toBe("{'polluted': 1}")
    expect(run("row['__proto__']['polluted']", hostile)).toEqual(py.int(1))
    expect(run("row['constructor']", hostile)).toEqual(py.str("c"))
    expect(run("len(row)", hostile)).toEqual(py.int(2))

    const back = toJs(run("{'__proto__': {'polluted': 1}, 'constructor': row['constructor']}", hostile)) as Record<string, unknown>
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
    expect(Object.hasOwn(back, "__proto__")).toBe(true)
    expect(back["polluted"]).toBeUndefined()
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
  })
})

describe("toJs", () => {
  it("converts back to JSON-like data", () => {
    expect(toJs(run("[None, True, 1, 2.5, 'x', (1, 2), {1: 'a', True: 'b', None: 0, 'k': [1]}]"))).toEqual([
      null,
      true,
      1,
      2.5,
      "x",
      [1, 2],
      { "1": "b", null: 0, k: [1] }
    ])
    expect(toJs(run("{3, 1}"))).toEqual([3, 1])
    expect(toJs(run("row", ROW))).toEqual(ROW)
  })
})

// ---------------------------------------------------------------------------
// Fuzzing

const TOKENS = [
  "row", "[", "]", "(", ")", "'", "\"", ".", "get", ",", "+", "-", "*", "/", "//", "%", "==", "!=", "<", "<=", ">",
  "and", "or", "not", "if", "else", "in", "is", "None", "True", "False", "1", "2.5", "0", "'a'", "'id'", "'__proto__'",
  "__proto__", "constructor", "'constructor'", "len", "str", "int", "float", "bool", "abs", "{", "}", ":", "\\", "#",
  "\n", "**", "&", "~", "lambda", "for", "x", "1e308", "'\\x41'", "r'\\'", "f'", "b'", "0x", "_", ";"
]
const tokenSoup = fc
  .array(fc.tuple(fc.constantFrom(...TOKENS), fc.constantFrom("", " ", " ", "")), { maxLength: 25 })
  .map((parts) => parts.map(([token, sep]) => token + sep).join(""))

// Mostly valid expressions built from the grammar.
const grammarExpr = fc.letrec<{ expr: string; atom: string }>((tie) => ({
  atom: fc.oneof(
    fc.constantFrom("row", "None", "True", "False", "0", "1", "-1", "2.5", "0.0", "1e20", "''", "'a'", "'id'", "'__proto__'"),
    fc.integer({ min: -1000, max: 1000 }).map(String),
    fc.constantFrom("row['id']", "row['name']", "row['tags']", "row.get('x')", "row.get('id', 0)", "row['nested']"),
    fc.string({ maxLength: 4 }).map((s) => JSON.stringify(s))
  ),
  expr: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    tie("atom"),
    fc.tuple(tie("expr"), fc.constantFrom("+", "-", "*", "/", "//", "%", "==", "!=", "<", "<=", ">=", "in", "not in", "and", "or"), tie("expr"))
      .map(([a, op, b]) => `(${a} ${op} ${b})`),
    fc.tuple(fc.constantFrom("len", "str", "int", "float", "bool", "abs", "not ", "-"), tie("expr")).map(([f, a]) => `${f}(${a})`),
    fc.tuple(tie("expr"), tie("expr"), tie("expr")).map(([a, b, c]) => `(${a} if ${b} else ${c})`),
    fc.array(tie("expr"), { maxLength: 3 }).map((items) => `[${items.join(", ")}]`),
    fc.array(tie("expr"), { maxLength: 3 }).map((items) => `(${items.join(", ")},)`),
    fc.array(fc.tuple(tie("expr"), tie("expr")), { maxLength: 2 }).map((kv) => `{${kv.map(([k, v]) => `${k}: ${v}`).join(", ")}}`),
    fc.tuple(fc.constantFrom("row", "row['tags']", "row['nested']", "row.get('x')"), tie("expr")).map(([t, i]) => `${t}[${i}]`)
  )
})).expr

const jsonRow = fc.record(
  {
    id: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(null)),
    name: fc.oneof(fc.string(), fc.fullUnicodeString()),
    tags: fc.array(fc.jsonValue(), { maxLength: 4 }),
    nested: fc.dictionary(fc.constantFrom("a", "k", "__proto__", "constructor"), fc.jsonValue()),
    x: fc.jsonValue()
  },
  { requiredKeys: [] }
)

/** Any code point, lone surrogates included (fc's "binary" unit has a slow first use). */
const anyChar = fc
  .oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0xd7f0, max: 0xe010 }), fc.integer({ min: 0, max: 0x10ffff }))
  .map((cp) => String.fromCodePoint(cp))
const anyString = (maxLength: number) => fc.string({ unit: anyChar, maxLength })

const PROTO_NAMES = Object.getOwnPropertyNames(Object.prototype).sort()

const checkParse = (source: string): void => {
  let parsed: ReturnType<typeof parseExpression> | undefined
  expect(() => {
    parsed = parseExpression(source)
  }).not.toThrow()
  if (parsed === undefined) return
  if (Either.isLeft(parsed)) {
    expect(parsed.left).toBeInstanceOf(ExpressionParseError)
    expect(parsed.left.column).toBeGreaterThanOrEqual(1)
    expect(parsed.left.column).toBeLessThanOrEqual([...source].length + 1)
    expect(parsed.left.message).toContain(`at column ${parsed.left.column}`)
  } else {
    expect(typeof parsed.right.isStaticallyBoolean).toBe("boolean")
  }
}

const checkEvaluate = (compiled: CompiledExpression, row: unknown): void => {
  const result = evaluateExpression(compiled, row)
  expect(result).toBeDefined()
  if (Either.isLeft(result)) {
    expect(result.left).toBeInstanceOf(ExpressionEvalError)
    expect(result.left.message.length).toBeGreaterThan(0)
  } else {
    expect(["NoneType", "bool", "int", "float", "str", "list", "tuple", "set", "dict"]).toContain(result.right.type)
    expect(typeof routeLabel(result.right)).toBe("string")
    if (compiled.isStaticallyBoolean) expect(result.right.type).toBe("bool")
    toJs(result.right)
  }
}

describe("fuzzing", () => {
  it("parses arbitrary text to a compiled expression or an ExpressionParseError", () => {
    fc.assert(fc.property(anyString(40), checkParse), { numRuns: 300 })
    fc.assert(fc.property(fc.fullUnicodeString({ maxLength: 40 }), checkParse), { numRuns: 300 })
    fc.assert(fc.property(fc.string({ maxLength: 40 }), checkParse), { numRuns: 300 })
    fc.assert(fc.property(tokenSoup, checkParse), { numRuns: 1000 })
  })

  it("evaluates compiled expressions to a value or an ExpressionEvalError, never a throw", () => {
    let compiledCount = 0
    fc.assert(
      fc.property(fc.oneof(tokenSoup, grammarExpr), jsonRow, (source, row) => {
        const parsed = parseExpression(source)
        if (Either.isLeft(parsed)) return
        compiledCount++
        checkEvaluate(parsed.right, row)
        checkEvaluate(parsed.right, JSON.parse("{\"__proto__\": {\"x\": 1}, \"constructor\": [1]}"))
      }),
      { numRuns: 1000 }
    )
    expect(compiledCount).toBeGreaterThan(200)
  })

  it("leaves Object.prototype untouched", () => {
    fc.assert(
      fc.property(grammarExpr, jsonRow, (source, row) => {
        const parsed = parseExpression(source)
        if (Either.isRight(parsed)) {
          const result = evaluateExpression(parsed.right, row)
          if (Either.isRight(result)) toJs(result.right)
        }
      }),
      { numRuns: 300 }
    )
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(PROTO_NAMES)
    expect(({} as Record<string, unknown>)["x"]).toBeUndefined()
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
  })

  it("int // and % follow Python's floor semantics", () => {
    const compiled = compile("(row['a'] // row['b'], row['a'] % row['b'])")
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }), fc.bigInt({ min: -(2n ** 40n), max: 2n ** 40n }), (a, b) => {
        fc.pre(b !== 0n)
        const value = compiled.evaluate({ a, b })
        if (value.type !== "tuple") throw new Error("expected a tuple")
        const [q, r] = value.items as [PyValue, PyValue]
        if (q.type !== "int" || r.type !== "int") throw new Error("expected ints")
        expect(q.value * b + r.value).toBe(a)
        expect(r.value === 0n || r.value < 0n === b < 0n).toBe(true)
        expect(r.value < 0n ? -r.value : r.value).toBeLessThan(b < 0n ? -b : b)
      }),
      { numRuns: 300 }
    )
  })

  it("str() of a float round-trips through float()", () => {
    const compiled = compile("float(str(row['x'])) == row['x']")
    fc.assert(
      fc.property(fc.double({ noNaN: true }), (x) => {
        expect(compiled.evaluate({ x: new RowFloat(x) })).toEqual(py.bool(true))
        expect(routeLabel(compiled.evaluate({ x: new RowFloat(x) }))).toBe("true")
      }),
      { numRuns: 300 }
    )
  })

  it("the repr of a string parses back to the same string", () => {
    const reprOf = compile("str([row['s']])")
    fc.assert(
      fc.property(fc.oneof(anyString(20), fc.string({ maxLength: 20 })), (s) => {
        const text = routeLabel(reprOf.evaluate({ s }))
        const literal = text.slice(1, -1)
        expect(run(literal, {})).toEqual(py.str(s))
      }),
      { numRuns: 300 }
    )
  })
})

describe("reading single fields of a row", () => {
  const evalOn = (src: string, row: unknown) => {
    const compiled = Either.getOrThrow(parseExpression(src))
    return evaluateExpression(compiled, row)
  }
  it("gives the same values as converting the whole row", () => {
    const row = { a: 1, b: 2.5, c: "x", d: [1, 2], e: null, wide: "y".repeat(1000) }
    expect(Either.getOrThrow(evalOn("row['a'] + row['b']", row))).toEqual(Either.getOrThrow(evalOn("row.get('a') + row.get('b')", row)))
    expect(routeLabel(Either.getOrThrow(evalOn("row['d']", row)))).toBe("[1, 2]")
    expect(routeLabel(Either.getOrThrow(evalOn("row.get('e', 5)", row)))).toBe("None")
    expect(routeLabel(Either.getOrThrow(evalOn("row.get('zz', 5)", row)))).toBe("5")
  })
  it("still evaluates row.get's default first, as Python does, even when the key exists", () => {
    const r = evalOn("row.get('a', 1 // 0)", { a: 1 })
    expect(Either.isLeft(r)).toBe(true)
  })
  it("keeps the KeyError message for a missing key", () => {
    const r = evalOn("row['missing']", { a: 1 })
    expect(Either.isLeft(r) && r.left.message).toMatch(/KeyError/)
  })
})

describe("each evaluation has its own step budget", () => {
  // 3M steps (two 1M-item repetitions and a 1M-item comparison); its value is True.
  const THREE_M = "([0] * 1000000 == [0] * 1000000)"
  const SIX_M = `${THREE_M} + ${THREE_M}`
  const TWELVE_M = `${SIX_M} + ${SIX_M}`

  /** A row whose field `x` runs `inner` (another evaluation) while the outer one reads it. */
  const reentrantRow = (inner: () => void): Record<string, unknown> =>
    new Proxy({ x: 1 }, {
      getOwnPropertyDescriptor(target, key) {
        if (key === "x") inner()
        return Reflect.getOwnPropertyDescriptor(target, key)
      }
    })

  it("two of the expressions below fit in one budget, four do not", () => {
    expect(2 * 3_000_000).toBeLessThan(EXPRESSION_LIMITS.maxSteps)
    expect(4 * 3_000_000).toBeGreaterThan(EXPRESSION_LIMITS.maxSteps)
    expect(run(SIX_M, {})).toEqual(py.int(2))
    expect(evalFailure(TWELVE_M, {}).message).toContain("too expensive")
  })

  it("an evaluation that fails half-way leaves the next one the whole budget", () => {
    expect(evalFailure(`${SIX_M} + 1 // 0`, {}).message).toContain("ZeroDivisionError")
    expect(run(SIX_M, {})).toEqual(py.int(2))
    expect(evalFailure(TWELVE_M, {}).message).toContain("too expensive")
    expect(run(SIX_M, {})).toEqual(py.int(2))
  })

  it("an evaluation nested in another spends its own budget, not the outer one's", () => {
    const inner = compile(SIX_M)
    let innerResult: PyValue | undefined
    const row = reentrantRow(() => {
      innerResult = inner.evaluate({})
    })
    // outer: 6M + 3M steps; inner: 6M steps. Shared, they would exceed the budget.
    expect(run(`${SIX_M} + row['x'] + ${THREE_M}`, row)).toEqual(py.int(4))
    expect(innerResult).toEqual(py.int(2))
  })

  it("a nested evaluation does not refill the outer one's budget", () => {
    const inner = compile("len([0])")
    let innerResult: PyValue | undefined
    const row = reentrantRow(() => {
      innerResult = inner.evaluate({})
    })
    expect(evalFailure(`${SIX_M} + row['x'] + ${SIX_M}`, row).message).toContain("too expensive")
    expect(innerResult).toEqual(py.int(1))
  })
})
