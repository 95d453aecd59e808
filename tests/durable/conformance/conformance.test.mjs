// The Durable Streams conformance suite, against the server at
// CONFORMANCE_TEST_URL (tests/durable/conformance.rs or run.sh sets it).
// The package's own CLI finds no test file when it is installed as a
// dependency (vitest leaves node_modules out), hence this file.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CONFORMANCE_TEST_URL
if (!baseUrl) {
  throw new Error("CONFORMANCE_TEST_URL is not set (say http://127.0.0.1:8080)")
}

runConformanceTests({
  baseUrl,
  longPollTimeoutMs: Number(process.env.CONFORMANCE_LONG_POLL_MS ?? 2000),
})
