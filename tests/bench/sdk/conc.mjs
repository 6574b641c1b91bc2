// The AWS SDK for JavaScript v3 in `make bench`, concurrency (issue 7): CONC
// async loops in one Node process, each awaiting GetCommand (or
// GetItemCommand) while requests are left of a shared count, so CONC
// requests are in flight at once until the count runs out. The client is
// the one of bench.mjs (DynamoDBDocumentClient over DynamoDBClient, the
// default NodeHttpHandler with its keep-alive agent, maxAttempts 3); only
// the agent's maxSockets is raised to CONC when CONC is above its default
// of 50, so that every loop has its own connection.
//
//   node tests/bench/sdk/conc.mjs ENDPOINT TARGET CONC N WARMUP [doc|low]
//
// doc (default): GetCommand through DynamoDBDocumentClient (the Item
// unmarshalled into a plain object), like bench.mjs; low: GetItemCommand on
// DynamoDBClient (the Item left in DynamoDB's attribute-value shape), the
// cheapest way through the SDK. First WARMUP requests that way (at least
// 4 x CONC, so every connection is open), unmeasured; then N, measured.
// Prints one line:
//   RESULT target=TARGET client=aws-sdk-js-v3[-low] bench=conc conc=CONC n=N
//          cpu_us_per_req=X req_per_s=Y req_per_cpu_s=Z max_in_flight=M
//          sockets=S
// CPU is process.cpuUsage() user+system over the measured part (every
// thread of the process); wall time is process.hrtime.bigint().
// max_in_flight is the peak of requests awaited at once in that part,
// sockets the agent's open sockets at its end.
import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, GetCommand } from "@aws-sdk/lib-dynamodb";

const [endpoint, target, concArg, nArg, warmupArg, apiArg] = process.argv.slice(2);
const conc = Number(concArg);
const n = Number(nArg);
let warmup = Number(warmupArg);
const api = apiArg ?? "doc";
if (!endpoint || !target || !(Number.isInteger(conc) && conc >= 1) || !(n >= conc) ||
    !(warmup >= 0) || (api !== "doc" && api !== "low")) {
  process.stderr.write("usage: conc.mjs ENDPOINT TARGET CONC N WARMUP [doc|low] (N >= CONC >= 1)\n");
  process.exit(2);
}
if (warmup < 4 * conc) warmup = 4 * conc;
const name = api === "doc" ? "aws-sdk-js-v3" : "aws-sdk-js-v3-low";

const maxSockets = Math.max(50, conc);
const ddb = new DynamoDBClient({
  region: "us-east-1",
  endpoint,
  credentials: { accessKeyId: "ddbkitbench", secretAccessKey: "x" },
  maxAttempts: 3,
  // Options of the default NodeHttpHandler: its agent is
  // new http.Agent({ keepAlive: true, maxSockets: 50, ...httpAgent }).
  requestHandler: { httpAgent: { maxSockets } },
});
const doc = DynamoDBDocumentClient.from(ddb);

let left = 0;      // requests not yet started, shared by the loops
let inFlight = 0;
let maxInFlight = 0;

async function docLoop() {
  let done = 0;
  while (left > 0) {
    left--;
    inFlight++;
    if (inFlight > maxInFlight) maxInFlight = inFlight;
    const res = await doc.send(new GetCommand({ TableName: "bench", Key: { pk: "p1" } }));
    inFlight--;
    if (!res.Item || res.Item.pk !== "p1") throw new Error("no item p1 in the response");
    done++;
  }
  return done;
}

async function lowLoop() {
  let done = 0;
  while (left > 0) {
    left--;
    inFlight++;
    if (inFlight > maxInFlight) maxInFlight = inFlight;
    const res = await ddb.send(new GetItemCommand({ TableName: "bench", Key: { pk: { S: "p1" } } }));
    inFlight--;
    if (!res.Item || !res.Item.pk || res.Item.pk.S !== "p1") {
      throw new Error("no item p1 in the response");
    }
    done++;
  }
  return done;
}

const loop = api === "doc" ? docLoop : lowLoop;

async function run(count, phase) {
  left = count;
  const loops = [];
  for (let i = 0; i < conc; i++) loops.push(loop());
  const done = (await Promise.all(loops)).reduce((a, b) => a + b, 0);
  if (done !== count) throw new Error(`${phase}: ${done} requests done, ${count} expected`);
}

function openSockets() {
  const agent = ddb.config.requestHandler?.config?.httpAgent;
  if (!agent || !agent.sockets) return -1;
  let s = 0;
  for (const k of Object.keys(agent.sockets)) s += agent.sockets[k].length;
  for (const k of Object.keys(agent.freeSockets ?? {})) s += agent.freeSockets[k].length;
  return s;
}

try {
  await run(warmup, "warm-up");
  maxInFlight = 0;
  const c0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  await run(n, "measured");
  const cpu = process.cpuUsage(c0);
  const w1 = process.hrtime.bigint();
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const wallS = Number(w1 - w0) / 1e9;
  console.log(
    `RESULT target=${target} client=${name} bench=conc conc=${conc} n=${n} ` +
      `cpu_us_per_req=${((cpuS * 1e6) / n).toFixed(2)} req_per_s=${(n / wallS).toFixed(0)} ` +
      `req_per_cpu_s=${(cpuS > 0 ? n / cpuS : 0).toFixed(0)} max_in_flight=${maxInFlight} ` +
      `sockets=${openSockets()}`,
  );
  doc.destroy();
  ddb.destroy();
} catch (e) {
  process.stderr.write(`conc.mjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
}
