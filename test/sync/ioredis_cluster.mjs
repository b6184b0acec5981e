// Reads the mirror through ioredis' Cluster client, with the reader key
// names unchanged, and compares it with what PostgreSQL says.
//
//   node test/sync/ioredis_cluster.mjs PREFIX < expected.tsv
//
// REDIS_CLUSTER_NODES=host:port,...; expected.tsv has one line per user:
// user_id, balance, available, held, newest ledger id (tab-separated).
// Exits 1 (printing the first differences) if any value differs.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../clients/node/package.json"));
const { Cluster } = require("ioredis");

const prefix = process.argv[2] ?? "";
const nodes = process.env.REDIS_CLUSTER_NODES.split(",").map((a) => {
  const i = a.lastIndexOf(":");
  return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
});
const rows = readFileSync(0, "utf8").split("\n").filter(Boolean).map((l) => l.split("\t"));
const redis = new Cluster(nodes, { enableAutoPipelining: true });
const bad = [];
try {
  // one command per key (four slots per user); auto-pipelined per node
  const settle = (p) => p.then((v) => [null, v], (e) => [e, null]);
  const res = await Promise.all(rows.flatMap(([u]) => [
    settle(redis.get(`${prefix}balance:${u}`)),
    settle(redis.get(`${prefix}available:${u}`)),
    settle(redis.get(`${prefix}held:${u}`)),
    settle(redis.zrevrange(`${prefix}txs:${u}`, 0, 0)),
  ]));
  rows.forEach(([u, balance, available, held, newest], i) => {
    const [b, a, h, t] = res.slice(4 * i, 4 * i + 4).map(([err, v]) => (err ? `error ${err.message}` : v));
    const id = t && t[0] ? String(JSON.parse(t[0]).id) : "";
    if (b !== balance || a !== available || h !== held || id !== newest)
      bad.push(`${u}: redis ${b}/${a}/${h}/${id}, postgres ${balance}/${available}/${held}/${newest}`);
  });
} finally {
  redis.disconnect();
}
if (bad.length > 0) {
  console.log(`${bad.length} of ${rows.length} users differ:\n${bad.slice(0, 5).join("\n")}`);
  process.exit(1);
}
console.log(`${rows.length} users read through ioredis Cluster, all equal`);
