/**
 * Preloaded (`node --import`) into a process the bench runs as users would (the
 * runledger CLI): on exit it writes the process's peak RSS, CPU time and sampled peak
 * heap to the file named by BENCH_USAGE_FILE. It imports nothing but node:fs
 * (support.ts's sampler would load the bench's dependencies into the measured process).
 */
import * as NodeFs from "node:fs"

const file = process.env.BENCH_USAGE_FILE
if (file !== undefined && file !== "") {
  let peakHeapUsed = 0
  const timer = setInterval(() => {
    peakHeapUsed = Math.max(peakHeapUsed, process.memoryUsage().heapUsed)
  }, 20)
  timer.unref()
  process.on("exit", () => {
    const usage = process.resourceUsage()
    NodeFs.writeFileSync(
      file,
      JSON.stringify({
        maxRss: usage.maxRSS * 1024,
        cpuMs: (usage.userCPUTime + usage.systemCPUTime) / 1000,
        peakHeapUsed: Math.max(peakHeapUsed, process.memoryUsage().heapUsed)
      })
    )
  })
}
