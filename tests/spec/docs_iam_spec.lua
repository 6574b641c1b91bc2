-- docs/iam.md against the code: the IAM policy the guide gives for each
-- feature allows exactly the DynamoDB actions that feature's code sends,
-- on exactly the table (and index) ARNs they name. No DynamoDB needed: the
-- operations are found by reading the sources.
--
-- How the operations are found (a static reading, deliberately simple and
-- conservative):
--   * each Lua file is cut into its top-level functions (a line starting
--     "function NAME(" or "local function NAME(" up to the next line that
--     is "end" at column 0; one-line functions end on their own line);
--     whatever is outside them is the file's "(main)" chunk;
--   * a chunk's operations are its client method calls (client:get_item{,
--     :query_all{, :transact_write_items{, ...: METHOD_OPS), any DynamoDB
--     operation named as a string literal ("Query"), and, where it drives
--     the engine's lock machine (lock_op / keep_lease), the operations
--     engine/lock.c sends (its step_send literals);
--   * a chunk reaches the chunks it calls: the file's own functions by
--     name, a required module's functions as alias.name( / alias:name(,
--     and a required module's methods (defined with ":") as obj:name(;
--   * a feature is a set of root chunks; its operations are everything
--     its roots reach;
--   * TransactWriteItems is authorised per item: Put / Update / Delete /
--     ConditionCheck items in the reached chunks need dynamodb:PutItem /
--     UpdateItem / DeleteItem / ConditionCheckItem; TransactGetItems needs
--     GetItem. A Query needs the table, and each index the reached chunks
--     name (IndexName = "x" or index = "x") too.
-- A call the reading cannot resolve (client:call with a variable
-- operation) fails the test: the doc cannot be checked against it.
--
-- Then each policy of docs/iam.md (a ```json block right after a
-- "<!-- policy: NAME -->" line) must allow every (action, ARN) pair its
-- feature needs, and nothing else: each Allow statement's actions times
-- its resources are all needed pairs. Adding an operation to a store
-- without updating the doc fails here; so does a doc that grants more.
local cjson = require "cjson.safe"

-- The tree this spec is in (busted may name it relative to the working
-- directory, or absolutely).
local ROOT = (debug.getinfo(1, "S").source:match("^@(.-)/?tests/spec/[^/]*$") or "")
if ROOT == "" then ROOT = "." end

local function read(rel)
  local f = assert(io.open(ROOT .. "/" .. rel, "rb"), "cannot open " .. rel)
  local s = f:read("a")
  f:close()
  return s
end

-- The example account and region of every checked ARN in docs/iam.md.
local ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/"
local STORE_TABLE, IDEM_TABLE = "http-client-toolkit", "idempotency-cache"

-- Client methods -> the DynamoDB operation each sends.
local METHOD_OPS = {
  get_item = "GetItem", put_item = "PutItem", update_item = "UpdateItem",
  delete_item = "DeleteItem",
  query = "Query", query_pages = "Query", query_items = "Query", query_all = "Query",
  scan = "Scan", scan_pages = "Scan", scan_items = "Scan", scan_all = "Scan",
  batch_get_item = "BatchGetItem", batch_write_item = "BatchWriteItem",
  transact_write_items = "TransactWriteItems", transact_get_items = "TransactGetItems",
  create_table = "CreateTable", describe_table = "DescribeTable",
  wait_for_table = "DescribeTable", delete_table = "DeleteTable",
  list_tables = "ListTables", update_table = "UpdateTable",
  update_time_to_live = "UpdateTimeToLive", describe_time_to_live = "DescribeTimeToLive",
}

-- Every DynamoDB operation ddbkit's client knows (client.lua's list is
-- checked against this below, so a new one is noticed).
local OP_NAMES = {
  "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
  "BatchWriteItem", "TransactWriteItems", "TransactGetItems", "CreateTable",
  "DescribeTable", "DeleteTable", "ListTables", "UpdateTable", "UpdateTimeToLive",
  "DescribeTimeToLive",
}
local IS_OP = {}
for _, op in ipairs(OP_NAMES) do IS_OP[op] = true end

-- Transaction items -> the IAM action each needs.
local ITEM_ACTIONS = { Put = "PutItem", Update = "UpdateItem", Delete = "DeleteItem",
                       ConditionCheck = "ConditionCheckItem" }

-- The operations engine/lock.c's machine sends.
local function engine_lock_ops()
  local ops = {}
  for op in read("engine/lock.c"):gmatch('step_send%s*%(%s*op%s*,%s*"(%w+)"') do ops[op] = true end
  return ops
end

-- Comments out (a "--" inside a string is rare enough in these files; a
-- wrongly cut line can only hide text after it, which the coverage check
-- below would notice as an op found in the file but in no chunk).
local function strip_comments(line)
  if line:match("^%s*%-%-") then return "" end
  local code = line:gsub("%s%-%-%s.*$", "")
  return code
end

-- file -> { chunks = { name -> { name, method, body } }, order, requires }
-- Long strings (help texts, examples) out, their lines kept: a call
-- written in a help text is not a call.
local function strip_long_strings(src)
  return (src:gsub("%[(=*)%[(.-)%]%1%]", function(_, body)
    return (body:gsub("[^\n]", ""))
  end))
end

local parsed = {}
local function parse(rel)
  if parsed[rel] then return parsed[rel] end
  local src = strip_long_strings(read(rel))
  local chunks, order, requires = {}, {}, {}
  local main = { name = "(main)", body = {} }
  local cur
  for line in (src .. "\n"):gmatch("([^\n]*)\n") do
    local code = strip_comments(line)
    if not cur then
      local qual = code:match("^function%s+([%w_%.:]+)%s*%(") or
                   code:match("^local%s+function%s+([%w_]+)%s*%(")
      if qual then
        local name = qual:match("([%w_]+)$")
        cur = { name = name, qual = qual, method = qual:find(":") ~= nil, body = { code } }
        if code:match("%f[%w_]end%s*$") then   -- a one-line function
          cur.body = table.concat(cur.body, "\n")
          chunks[qual] = cur
          order[#order + 1] = qual
          cur = nil
        end
      else
        main.body[#main.body + 1] = code
      end
    else
      cur.body[#cur.body + 1] = code
      if code:match("^end%f[^%w_]") or code == "end" then
        cur.body = table.concat(cur.body, "\n")
        chunks[cur.qual] = cur
        order[#order + 1] = cur.qual
        cur = nil
      end
    end
    local alias, mod = code:match('^local%s+([%w_]+)%s*=%s*require%s*%(?%s*["\']ddbkit%.([%w_%.]+)["\']%s*%)?%s*$')
    if alias then requires[alias] = "lua/ddbkit/" .. mod:gsub("%.", "/") .. ".lua" end
  end
  assert(cur == nil, rel .. ": function " .. (cur and cur.qual or "") .. " has no closing end")
  main.body = table.concat(main.body, "\n")
  chunks["(main)"] = main
  order[#order + 1] = "(main)"
  parsed[rel] = { rel = rel, chunks = chunks, order = order, requires = requires, src = src }
  return parsed[rel]
end

local function file_exists(rel)
  local f = io.open(ROOT .. "/" .. rel, "rb")
  if f then f:close() end
  return f ~= nil
end

-- What a chunk sends directly: a set of operations, plus transaction item
-- kinds and index names; errors for what cannot be resolved.
local function direct(chunk, lock_ops)
  local body = chunk.body
  local ops, items, indexes, problems = {}, {}, {}, {}
  for m in body:gmatch(":([%w_]+)%s*[%(%{]") do
    if METHOD_OPS[m] then ops[METHOD_OPS[m]] = true end
  end
  for lit in body:gmatch('"(%u%a+)"') do
    if IS_OP[lit] then ops[lit] = true end
  end
  for arg in body:gmatch(":call%s*%(%s*([^,%)]+)") do
    local lit = arg:match('^"(%w+)"$')
    if not (lit and IS_OP[lit]) then
      problems[#problems + 1] = "client:call with an operation this test cannot read: " .. arg
    end
  end
  if body:find("lock_op%s*%(") or body:find("keep_lease%s*%(") then
    for op in pairs(lock_ops) do ops[op] = true end
  end
  for kind in body:gmatch("%f[%w_](%u%a+)%s*=%s*{") do
    if ITEM_ACTIONS[kind] then items[kind] = true end
  end
  for ix in body:gmatch('IndexName%s*=%s*"([%w_%.%-]+)"') do indexes[ix] = true end
  for ix in body:gmatch('%f[%w_]index%s*=%s*"([%w_%.%-]+)"') do indexes[ix] = true end
  return ops, items, indexes, problems
end

-- The ddbkit modules a file requires, and theirs: a set of files.
local function required_closure(file)
  local out, todo = {}, { file }
  while #todo > 0 do
    local f = table.remove(todo)
    for _, rel in pairs(f.requires) do
      if not out[rel] and file_exists(rel) then
        out[rel] = true
        todo[#todo + 1] = parse(rel)
      end
    end
  end
  return out
end

-- The chunks a chunk calls: { file, qual } pairs.
local function callees(file, chunk)
  local out, body = {}, chunk.body
  for _, qual in ipairs(file.order) do
    local c = file.chunks[qual]
    if qual ~= chunk.qual and c.name ~= "(main)" then
      if body:find("%f[%w_]" .. c.name .. "%s*[%(%{\"']") then out[#out + 1] = { file.rel, qual } end
    end
  end
  for alias, rel in pairs(file.requires) do
    if file_exists(rel) and body:find("%f[%w_]" .. alias .. "[%.:]") then
      local other = parse(rel)
      for _, qual in ipairs(other.order) do
        local c = other.chunks[qual]
        if c.name ~= "(main)" and body:find("%f[%w_]" .. alias .. "[%.:]" .. c.name .. "%s*[%(%{\"']") then
          out[#out + 1] = { rel, qual }
        end
      end
    end
  end
  -- methods of objects the modules it requires (directly or not) make:
  -- h:release(), compat.lock_of(...):acquire{}
  for rel in pairs(required_closure(file)) do
    local other = parse(rel)
    for _, qual in ipairs(other.order) do
      local c = other.chunks[qual]
      if c.method and body:find(":" .. c.name .. "%s*[%(%{\"']") then out[#out + 1] = { rel, qual } end
    end
  end
  return out
end

-- A feature's needs from its roots: { ops, items, indexes, problems, reached }.
-- roots: { { file = rel, only = { names }?, except = { names }? } ... };
-- excluded: files the walk does not enter (see FEATURES).
local function needs(roots, excluded)
  local lock_ops = engine_lock_ops()
  local seen, queue = {}, {}
  local ex = {}
  for _, rel in ipairs(excluded or {}) do ex[rel] = true end
  for _, r in ipairs(roots) do
    local file = parse(r.file)
    local only, except = {}, {}
    for _, n in ipairs(r.only or {}) do only[n] = true end
    for _, n in ipairs(r.except or {}) do except[n] = true end
    local matched = {}
    for _, qual in ipairs(file.order) do
      local c = file.chunks[qual]
      local take
      if r.only then take = only[c.name] else take = not except[c.name] end
      if take then
        queue[#queue + 1] = { r.file, qual }
        matched[c.name] = true
      end
    end
    for n in pairs(only) do
      assert(matched[n], r.file .. " has no function " .. n .. " (the test's root list is stale)")
    end
  end
  local ops, items, indexes, problems, reached = {}, {}, {}, {}, {}
  while #queue > 0 do
    local ref = table.remove(queue)
    local key = ref[1] .. "#" .. ref[2]
    if not seen[key] and not ex[ref[1]] then
      seen[key] = true
      reached[#reached + 1] = key
      local file = parse(ref[1])
      local chunk = file.chunks[ref[2]]
      local o, it, ix, pr = direct(chunk, lock_ops)
      for k in pairs(o) do ops[k] = true end
      for k in pairs(it) do items[k] = true end
      for k in pairs(ix) do indexes[k] = true end
      for _, p in ipairs(pr) do problems[#problems + 1] = key .. ": " .. p end
      for _, c in ipairs(callees(file, chunk)) do queue[#queue + 1] = c end
    end
  end
  return { ops = ops, items = items, indexes = indexes, problems = problems, reached = reached }
end

-- The (action, ARN) pairs a feature needs on `tables`.
local function pairs_needed(n, tables)
  local want = {}
  local function add(action, arn) want[action .. " " .. arn] = true end
  for op in pairs(n.ops) do
    for _, t in ipairs(tables) do
      if op == "TransactWriteItems" then
        for kind in pairs(n.items) do add("dynamodb:" .. ITEM_ACTIONS[kind], ARN .. t) end
      elseif op == "TransactGetItems" then
        add("dynamodb:GetItem", ARN .. t)
      elseif op == "ListTables" then
        want["dynamodb:ListTables *"] = true
      else
        add("dynamodb:" .. op, ARN .. t)
        if op == "Query" then
          for ix in pairs(n.indexes) do add("dynamodb:Query", ARN .. t .. "/index/" .. ix) end
        end
      end
    end
  end
  return want
end

-- Policies of docs/iam.md: name -> decoded JSON.
local function doc_policies()
  local doc = read("docs/iam.md")
  local out, count = {}, 0
  for name, body in doc:gmatch("<!%-%- policy: ([%w_%-]+) %-%->%s*```json\n(.-)\n```") do
    local p, err = cjson.decode(body)
    assert(p, "docs/iam.md: policy " .. name .. " is not valid JSON: " .. tostring(err))
    assert(out[name] == nil, "docs/iam.md: policy " .. name .. " appears twice")
    out[name] = p
    count = count + 1
  end
  return out, count, doc
end

local function list(v)
  if type(v) == "table" then return v end
  return { v }
end

-- The (action, resource) pairs a policy allows, as written.
local function pairs_allowed(policy)
  assert(policy.Version == "2012-10-17", "Version must be 2012-10-17")
  local got = {}
  for _, st in ipairs(list(policy.Statement)) do
    if st.Effect == "Allow" then
      for _, a in ipairs(list(st.Action)) do
        for _, r in ipairs(list(st.Resource)) do got[a .. " " .. r] = true end
      end
    end
  end
  return got
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- The features and where their code is. Exclusions say which files a
-- feature's walk does not enter although a name there matches: the other
-- idempotency layout and the StorageAdapter are chosen at run time (by
-- mode, by calling idem:adapter()), not called by the layout at hand.
local STORE_FEATURES = { "cache", "dedupe", "ratelimit", "adaptive" }
local FEATURES = {
  cache = { tables = { STORE_TABLE }, roots = { { file = "lua/ddbkit/cache.lua", except = { "clear" } } } },
  dedupe = { tables = { STORE_TABLE }, roots = { { file = "lua/ddbkit/dedupe.lua", except = { "clear" } } } },
  rate_limit = { tables = { STORE_TABLE },
    roots = { { file = "lua/ddbkit/ratelimit.lua", except = { "clear" } } } },
  adaptive_rate_limit = { tables = { STORE_TABLE }, roots = {
    { file = "lua/ddbkit/adaptive.lua" },
    -- shared with ddbkit.ratelimit (adaptive.lua's copy loop)
    { file = "lua/ddbkit/ratelimit.lua",
      only = { "set_cooldown", "get_cooldown", "clear_cooldown", "set_resource_config",
               "get_resource_config" } } } },
  clear = { tables = { STORE_TABLE }, roots = {
    { file = "lua/ddbkit/cache.lua", only = { "clear" } },
    { file = "lua/ddbkit/dedupe.lua", only = { "clear" } },
    { file = "lua/ddbkit/ratelimit.lua", only = { "clear" } } } },
  locks = { tables = { STORE_TABLE }, roots = { { file = "lua/ddbkit/lock.lua" } } },
  idempotency_compat = { tables = { IDEM_TABLE }, roots = {
    { file = "lua/ddbkit/idempotency.lua", except = { "adapter" } },
    { file = "lua/ddbkit/idempotency/compat.lua" } },
    excluded = { "lua/ddbkit/idempotency/fast.lua", "lua/ddbkit/idempotency/adapter.lua" } },
  idempotency_fast = { tables = { IDEM_TABLE }, roots = {
    { file = "lua/ddbkit/idempotency.lua", except = { "adapter" } },
    { file = "lua/ddbkit/idempotency/fast.lua" } },
    excluded = { "lua/ddbkit/idempotency/compat.lua", "lua/ddbkit/idempotency/adapter.lua" } },
  idempotency_adapter = { tables = { IDEM_TABLE }, roots = {
    { file = "lua/ddbkit/idempotency/adapter.lua" } },
    excluded = { "lua/ddbkit/idempotency/fast.lua" } },
  table_create = { tables = { STORE_TABLE, IDEM_TABLE }, roots = {
    { file = "lua/ddbkit/cli/table.lua", only = { "table_create" } } } },
  table_describe = { tables = { STORE_TABLE, IDEM_TABLE }, roots = {
    { file = "lua/ddbkit/cli/table.lua", only = { "table_describe" } } } },
  table_delete = { tables = { STORE_TABLE, IDEM_TABLE }, roots = {
    { file = "lua/ddbkit/cli/table.lua", only = { "table_delete" } } } },
  table_ttl = { tables = { STORE_TABLE, IDEM_TABLE }, roots = {
    { file = "lua/ddbkit/cli/table.lua", only = { "table_ttl" } } } },
  setup_tables = { tables = { STORE_TABLE, IDEM_TABLE }, roots = {
    { file = "scripts/setup_tables.lua" } } },
  -- The REPL's and `ddbkit run`'s globals (cli/globals.lua): every store
  -- with its clear, locks on the store table, idem in its default (compat)
  -- mode and its StorageAdapter.
  repl = { union = { "cache", "dedupe", "rate_limit", "adaptive_rate_limit", "clear", "locks",
                     "idempotency_compat", "idempotency_adapter" } },
}

describe("docs/iam.md", function()
  local policies, count, doc = doc_policies()

  it("has a policy for every feature, and no policy for a feature the test does not know", function()
    for name in pairs(FEATURES) do
      assert(policies[name], "docs/iam.md has no <!-- policy: " .. name .. " --> block")
    end
    for name in pairs(policies) do
      assert(FEATURES[name], "docs/iam.md has a policy " .. name .. " that no feature here checks")
    end
    assert.are.equal(#sorted_keys(FEATURES), count)
  end)

  it("has only valid JSON in its json blocks", function()
    local n = 0
    for body in doc:gmatch("```json\n(.-)\n```") do
      n = n + 1
      local v, err = cjson.decode(body)
      assert(v ~= nil, "a json block of docs/iam.md does not parse: " .. tostring(err)
             .. "\n" .. body:sub(1, 200))
    end
    assert(n >= count, "fewer json blocks than policies")
  end)

  for _, name in ipairs(sorted_keys(FEATURES)) do
    local f = FEATURES[name]
    it("policy " .. name .. " allows exactly what its code sends", function()
      local want, sent = {}, {}
      for _, part in ipairs(f.union or { name }) do
        local pf = FEATURES[part]
        local n = needs(pf.roots, pf.excluded)
        assert.are.same({}, n.problems)
        assert(next(n.ops), part .. ": no DynamoDB operation found in its code (the reading is broken)")
        if n.ops.TransactWriteItems then
          assert(next(n.items), part .. ": a transaction whose items this test cannot find")
        end
        for k in pairs(pairs_needed(n, pf.tables)) do want[k] = true end
        for k in pairs(n.ops) do sent[k] = true end
      end
      local got = pairs_allowed(policies[name])
      local missing, extra = {}, {}
      for k in pairs(want) do if not got[k] then missing[#missing + 1] = k end end
      for k in pairs(got) do if not want[k] then extra[#extra + 1] = k end end
      table.sort(missing)
      table.sort(extra)
      assert(#missing == 0 and #extra == 0, ("policy %s in docs/iam.md is not what the code needs."
        .. "\n  the code sends %s\n  missing from the policy: %s\n  allowed but never sent: %s")
        :format(name, table.concat(sorted_keys(sent), ", "), table.concat(missing, ", "),
                table.concat(extra, ", ")))
    end)
  end

  it("finds every operation of every store file in some function it reads", function()
    -- The cut into functions loses nothing: the operations of all chunks
    -- of a file are those of the whole file read at once.
    local lock_ops = engine_lock_ops()
    assert(lock_ops.UpdateItem and lock_ops.GetItem, "engine/lock.c's operations not found")
    for _, rel in ipairs({ "lua/ddbkit/cache.lua", "lua/ddbkit/dedupe.lua", "lua/ddbkit/ratelimit.lua",
                           "lua/ddbkit/adaptive.lua", "lua/ddbkit/lock.lua",
                           "lua/ddbkit/idempotency/compat.lua", "lua/ddbkit/idempotency/fast.lua",
                           "lua/ddbkit/idempotency/record.lua", "lua/ddbkit/idempotency/adapter.lua",
                           "lua/ddbkit/cli/table.lua" }) do
      local file = parse(rel)
      local whole = {}
      for line in (file.src .. "\n"):gmatch("([^\n]*)\n") do whole[#whole + 1] = strip_comments(line) end
      local all = direct({ body = table.concat(whole, "\n") }, lock_ops)
      local union = {}
      for _, qual in ipairs(file.order) do
        for op in pairs((direct(file.chunks[qual], lock_ops))) do union[op] = true end
      end
      assert.are.same(sorted_keys(all), sorted_keys(union))
    end
  end)

  it("covers every store: each store file is reached by its feature", function()
    for _, s in ipairs(STORE_FEATURES) do
      local feature = s == "ratelimit" and "rate_limit" or s == "adaptive" and "adaptive_rate_limit" or s
      local n = needs(FEATURES[feature].roots, FEATURES[feature].excluded)
      local hit = false
      for _, key in ipairs(n.reached) do
        if key:find("lua/ddbkit/" .. s .. ".lua#", 1, true) then hit = true end
      end
      assert(hit, feature .. " does not read lua/ddbkit/" .. s .. ".lua")
    end
  end)

  it("lists every client operation with its IAM action", function()
    -- client.lua's OPERATIONS; each needs a row "| Op | ... | dynamodb:Action ... |"
    local src = read("lua/ddbkit/client.lua")
    local listed = assert(src:match("local%s+OPERATIONS%s*=%s*(%b{})"), "client.lua's OPERATIONS not found")
    local names = {}
    for op in listed:gmatch('"(%u%a+)"') do names[op] = true end
    for op in pairs(names) do
      assert(IS_OP[op], "client.lua has an operation " .. op .. " this test does not know: add it "
             .. "to OP_NAMES and METHOD_OPS here, and a row to docs/iam.md")
      local row = doc:match("\n| " .. op .. " |([^\n]*)")
      assert(row, "docs/iam.md's operation table has no row for " .. op)
      local actions = op == "TransactWriteItems" and { "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem" }
                   or op == "TransactGetItems" and { "GetItem" } or { op }
      for _, a in ipairs(actions) do
        assert(row:find("dynamodb:" .. a, 1, true), "docs/iam.md's row for " .. op .. " does not say dynamodb:" .. a)
      end
    end
    for _, op in ipairs(OP_NAMES) do
      assert(names[op], "client.lua no longer names " .. op .. ": update OP_NAMES here and the doc")
    end
  end)

  it("keeps the OpenResty helpers free of requests of their own", function()
    -- docs/iam.md gives them their stores' policies: they must only call stores.
    local lock_ops = engine_lock_ops()
    for _, rel in ipairs({ "lua/ddbkit/resty/rate_limit.lua", "lua/ddbkit/resty/cache_proxy.lua",
                           "lua/ddbkit/resty/idempotent.lua", "lua/ddbkit/resty/http.lua" }) do
      local file = parse(rel)
      for _, qual in ipairs(file.order) do
        local ops = direct(file.chunks[qual], lock_ops)
        assert.are.same({}, sorted_keys(ops), rel .. " " .. qual .. " sends a request itself")
      end
    end
  end)

  it("keeps the REPL's start free of requests", function()
    -- The REPL and `ddbkit run` make their globals without a request, so
    -- starting them needs no permission (docs/iam.md says so).
    local lock_ops = engine_lock_ops()
    for _, rel in ipairs({ "lua/ddbkit/cli/globals.lua", "lua/ddbkit/repl.lua" }) do
      local file = parse(rel)
      for _, qual in ipairs(file.order) do
        local ops = direct(file.chunks[qual], lock_ops)
        assert.are.same({}, sorted_keys(ops), rel .. " " .. qual .. " sends a request")
      end
    end
  end)
end)
