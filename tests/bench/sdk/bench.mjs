// The AWS SDK for JavaScript v3 in `make bench`: DynamoDBDocumentClient over
// DynamoDBClient (default NodeHttpHandler, whose agent keeps connections
// alive), GetCommand N times, each awaited before the next.
//
//   node tests/bench/sdk/bench.mjs ENDPOINT TARGET N WARMUP
//
// Prints one line:
//   RESULT target=TARGET client=aws-sdk-js-v3 n=N cpu_us_per_req=X req_per_s=Y
// CPU is process.cpuUsage() user+system over the measured loop (every
// thread of the process, as getrusage counts for the C clients); wall time
// is process.hrtime.bigint().
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, GetCommand } from "@aws-sdk/lib-dynamodb";

const [endpoint, target, nArg, warmupArg] = process.argv.slice(2);
const n = Number(nArg);
const warmup = Number(warmupArg);
if (!endpoint || !target || !(n > 0) || !(warmup >= 0)) {
  process.stderr.write("usage: bench.mjs ENDPOINT TARGET N WARMUP\n");
  process.exit(2);
}

const doc = DynamoDBDocumentClient.from(
  new DynamoDBClient({
    region: "us-east-1",
    endpoint,
    credentials: { accessKeyId: "ddbkitbench", secretAccessKey: "x" },
    maxAttempts: 3,
  }),
);

async function run(count) {
  for (let i = 0; i < count; i++) {
    const res = await doc.send(
      new GetCommand({ TableName: "bench", Key: { pk: "p1" } }),
    );
    if (!res.Item || res.Item.pk !== "p1") {
      throw new Error(`request ${i}: no item p1 in the response`);
    }
  }
}

try {
  await run(warmup);
  const c0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  await run(n);
  const cpu = process.cpuUsage(c0);
  const w1 = process.hrtime.bigint();
  const cpuUs = cpu.user + cpu.system;
  const wallS = Number(w1 - w0) / 1e9;
  console.log(
    `RESULT target=${target} client=aws-sdk-js-v3 n=${n} ` +
      `cpu_us_per_req=${(cpuUs / n).toFixed(2)} req_per_s=${(n / wallS).toFixed(0)}`,
  );
  doc.destroy();
} catch (e) {
  process.stderr.write(`bench.mjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
}
