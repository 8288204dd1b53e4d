/**
 * Secrets in settings (`api_key: ${OPENROUTER_API_KEY}`, an http transform's headers)
 * are expanded from the environment when the file is read and sent with requests, but
 * never recorded: the settings snapshot in `runs.settings_json` and each node's
 * `config_json` hold `"[redacted]"` in their place.
 */
const SECRET_KEY = /^(api_key|apikey|api_token|access_token|password|secret|client_secret|authorization)$/i

export const REDACTED = "[redacted]"

/** A copy of `value` with secret values replaced by `[redacted]`. */
export const redactSecrets = <A>(value: A): A => redact(value, false) as A

const redact = (value: unknown, allValuesSecret: boolean): unknown => {
  if (Array.isArray(value)) return value.map((v) => redact(v, false))
  if (value === null || typeof value !== "object") {
    return allValuesSecret && value !== null && value !== undefined ? REDACTED : value
  }
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) {
    const secret = allValuesSecret || (SECRET_KEY.test(key) && (typeof v === "string" || typeof v === "number"))
    const next = secret && (typeof v === "string" || typeof v === "number") ? REDACTED : redact(v, key === "headers")
    Object.defineProperty(out, key, { value: next, enumerable: true, writable: true, configurable: true })
  }
  return out
}
