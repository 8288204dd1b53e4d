/**
 * An OTLP/HTTP receiver on 127.0.0.1 (port 0) for tests: it accepts the JSON encoding
 * the `-otlp-http` exporters send and keeps every span and metric it was sent.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

interface AnyValue {
  readonly stringValue?: string
  readonly intValue?: string | number
  readonly doubleValue?: number
  readonly boolValue?: boolean
}

export interface ReceivedSpan {
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly attributes: Readonly<Record<string, string | number | boolean | undefined>>
  readonly events: ReadonlyArray<string>
  readonly service: string | undefined
}

export interface Receiver {
  readonly endpoint: string
  readonly spans: Array<ReceivedSpan>
  readonly metrics: Array<string>
  readonly requests: Array<{ readonly path: string; readonly contentType: string | undefined }>
  readonly close: () => Promise<void>
}

const value = (v: AnyValue | undefined) =>
  v === undefined
    ? undefined
    : v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? v.boolValue

const attributes = (list: ReadonlyArray<{ key: string; value: AnyValue }> | undefined) =>
  Object.fromEntries((list ?? []).map((a) => [a.key, value(a.value)]))

type Body = {
  resourceSpans?: Array<{
    resource?: { attributes?: Array<{ key: string; value: AnyValue }> }
    scopeSpans?: Array<{
      spans?: Array<{
        name: string
        traceId: string
        spanId: string
        parentSpanId?: string
        attributes?: Array<{ key: string; value: AnyValue }>
        events?: Array<{ name: string }>
      }>
    }>
  }>
  resourceMetrics?: Array<{ scopeMetrics?: Array<{ metrics?: Array<{ name: string }> }> }>
}

export const startReceiver = (): Promise<Receiver> =>
  new Promise((resolve) => {
    const spans: Array<ReceivedSpan> = []
    const metrics: Array<string> = []
    const requests: Array<{ path: string; contentType: string | undefined }> = []
    const server = createServer((req, res) => {
      let text = ""
      req.setEncoding("utf8")
      req.on("data", (chunk: string) => (text += chunk))
      req.on("end", () => {
        requests.push({ path: req.url ?? "", contentType: req.headers["content-type"] })
        const body = JSON.parse(text) as Body
        for (const rs of body.resourceSpans ?? []) {
          const service = attributes(rs.resource?.attributes)["service.name"]
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              spans.push({
                name: s.name,
                traceId: s.traceId,
                spanId: s.spanId,
                parentSpanId: s.parentSpanId === undefined || s.parentSpanId === "" ? undefined : s.parentSpanId,
                attributes: attributes(s.attributes),
                events: (s.events ?? []).map((e) => e.name),
                service: typeof service === "string" ? service : undefined
              })
            }
          }
        }
        for (const rm of body.resourceMetrics ?? []) {
          for (const sm of rm.scopeMetrics ?? []) for (const m of sm.metrics ?? []) metrics.push(m.name)
        }
        res.writeHead(200, { "content-type": "application/json" })
        res.end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as AddressInfo).port
      resolve({
        endpoint: `http://127.0.0.1:${port}`,
        spans,
        metrics,
        requests,
        close: () => new Promise<void>((done) => server.close(() => done()))
      })
    })
  })
