-- The Node idempotency middleware's key derivation in JavaScript, run by
-- `node` as the reference the specs compare ddbkit's cache keys with
-- (idempotency_node_key_spec, resty_helpers_spec): each batch of cases is
-- one bounded node process.
local H = require "test_helper"
local assert = require "luassert"

local concat, format = table.concat, string.format

local R = {}

-- The middleware's key derivation, as its hash.ts and middleware.ts do it
-- (execute), and as its Express integration does it for an HTTP request
-- (idem:handle's counterpart: req.headers as Node's http module gives them,
-- header values decoded as latin1, req.body as the body parser left it).
local REFERENCE = [[
const crypto = require('crypto');
const sha = (s) => crypto.createHash('sha256').update(s).digest('hex');
const hashBody = (b) => (b === undefined || b === null) ? '' : sha(typeof b === 'string' ? b : JSON.stringify(b));
function vary(headers, names) {
  if (!names || names.length === 0) return undefined;
  const r = {};
  for (const h of names) {
    const v = headers[h.toLowerCase()];
    if (typeof v === 'string') r[h] = v; else if (Array.isArray(v)) r[h] = v.join(', ');
  }
  return Object.keys(r).length > 0 ? r : undefined;
}
function gen(o) {
  const hp = o.varyHeaders ? Object.entries(o.varyHeaders).sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`).join('&') : '';
  return sha(`${o.method}:${o.path}:${o.idempotencyKey}:${o.bodyHash ?? ''}:${hp}`);
}
function execKey(cfg, key, ctx) {
  const o = { idempotencyKey: key, method: 'POST', path: '/' };
  if (ctx && typeof ctx === 'object') {
    if (typeof ctx.method === 'string') o.method = ctx.method;
    if (typeof ctx.path === 'string') o.path = ctx.path;
    if ((cfg.varyHeaders || []).length > 0 && ctx.headers) o.varyHeaders = vary(ctx.headers, cfg.varyHeaders);
    if (cfg.includeBodyInKey !== false) {
      const body = ctx.body ?? ctx.input;
      if (body !== undefined) o.bodyHash = hashBody(body);
    }
  }
  return gen(o);
}
function expressKey(cfg, req) {
  const key = req.headers[(cfg.headerName || 'Idempotency-Key').toLowerCase()];
  return gen({ idempotencyKey: key, method: req.method, path: req.path,
               bodyHash: cfg.includeBodyInKey === false ? undefined : hashBody(req.body),
               varyHeaders: vary(req.headers, cfg.varyHeaders || []) });
}
const bytes = (hex) => Buffer.from(hex, 'hex').toString('latin1');
const out = [];
]]

local tmpdir

-- Runs the reference with `body` (JavaScript that pushes lines onto out),
-- in one bounded node process, and returns the lines. LC_ALL=C: the locale
-- a Node service gets in a container that sets none (en-US collation).
function R.node(body)
  tmpdir = tmpdir or H.mktemp_dir()
  local file = tmpdir .. "/ref.js"
  H.write_file(file, REFERENCE .. body .. "\nprocess.stdout.write(out.join('\\n') + '\\n');\n")
  local p = assert(io.popen(H.bounded("env LC_ALL=C LANG=C node " .. H.shell_quote(file), 60)))
  local lines = {}
  for line in p:lines() do lines[#lines + 1] = line end
  p:close()
  return lines
end

function R.hex(s)
  return (s:gsub(".", function(c) return format("%02x", c:byte()) end))
end

-- A JavaScript string literal for Lua text (UTF-8), via JSON: code points
-- survive, and \u escapes stay what they are.
function R.js_string(s)
  return '"' .. (s:gsub('[%c"\\]', function(c) return format("\\u%04x", c:byte()) end)) .. '"'
end

-- Runs each case's JavaScript expression (a cache key) in one node process
-- and asserts ddbkit's key for it is the same, case by case.
function R.same_as_node(cases)
  local js = {}
  for i, c in ipairs(cases) do js[i] = "out.push(" .. c.js .. ");" end
  local want = R.node(concat(js, "\n"))
  assert.are.equal(#cases, #want, "node answered " .. #want .. " lines for " .. #cases .. " cases")
  local wrong = {}
  for i, c in ipairs(cases) do
    local got = c.lua()
    if got ~= want[i] then wrong[#wrong + 1] = c.name .. ": ddbkit " .. tostring(got) .. ", node " .. want[i] end
  end
  assert.are.same({}, wrong)
end

--- R.cleanup(): removes the scratch folder of the node runs.
function R.cleanup()
  if tmpdir then os.execute("rm -rf " .. H.shell_quote(tmpdir)) end
  tmpdir = nil
end

return R
