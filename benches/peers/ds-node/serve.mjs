// The Node reference Durable Streams server (@durable-streams/server) for
// benches/durable_streams.py:
//   node serve.mjs PORT [LONG_POLL_TIMEOUT_MS] [DATA_DIR]
// Without DATA_DIR: its memory store. With DATA_DIR: its file-backed store
// (`FileBackedStreamStore`: a log file per stream, fdatasync before each
// append is answered, metadata in LMDB under DATA_DIR).
// Prints "listening on http://127.0.0.1:PORT" once it accepts connections.
import { DurableStreamTestServer } from "@durable-streams/server";

const port = Number(process.argv[2] ?? 4437);
const longPollTimeout = Number(process.argv[3] ?? 30000);
const dataDir = process.argv[4] || undefined;
const server = new DurableStreamTestServer({ port, host: "127.0.0.1", longPollTimeout, dataDir });
const url = await server.start();
console.log(`listening on ${url}`);
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.stop().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
