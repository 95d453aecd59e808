// The Node reference Durable Streams server (@durable-streams/server), in
// memory, for benches/durable_streams.py:
//   node serve.mjs PORT [LONG_POLL_TIMEOUT_MS]
// Prints "listening on http://127.0.0.1:PORT" once it accepts connections.
import { DurableStreamTestServer } from "@durable-streams/server";

const port = Number(process.argv[2] ?? 4437);
const longPollTimeout = Number(process.argv[3] ?? 30000);
const server = new DurableStreamTestServer({ port, host: "127.0.0.1", longPollTimeout });
const url = await server.start();
console.log(`listening on ${url}`);
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.stop().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
