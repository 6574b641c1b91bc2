-- The REPL of the `ddbkit` command: completion of the public API, locals
-- that last, :stats, results, piped input, and the views of ddbkit's own
-- records (:lock, :limit, :idem, :cache) read from items the real stores
-- wrote on DynamoDB Local. Driven through tmux or a pipe (cli_helper.lua),
-- plus the pieces that are plain functions (ddbkit.repl.locals and
-- ddbkit.repl.complete) called directly.
local C = require "cli_helper"
local H, q, rm_rf = C.H, C.q, C.rm_rf
local lines_of, contains, lacks, words, cli, show, exits =
      C.lines_of, C.contains, C.lacks, C.words, C.cli, C.show, C.exits
local PROMPT, new_repl, last_line, count_prompts = C.PROMPT, C.new_repl, C.last_line,
                                                    C.count_prompts
local ddbkit = require "ddbkit"
local jsjson = require "ddbkit.jsjson"
local schema = require "ddbkit.schema"
local locals = require "ddbkit.repl.locals"

-- The names completion lists after `prefix` (tokens of the screen).
local function listed(screen, prefix)
  local set = {}
  local pat = prefix:gsub("%p", "%%%0") .. "([%w_]+)"
  for name in screen:gmatch(pat) do set[name] = true end
  return set
end

describe("the REPL", function()
  local home

  setup(function() home = H.mktemp_dir() end)
  teardown(function() rm_rf(home) end)

  local function piped(input, extra, env)
    return cli(home, (extra or "") .. " " .. words("--endpoint", H.endpoint),
               { stdin = input, env = env })
  end

  describe("completion (in a terminal)", function()
    local r
    after_each(function()
      if r then r:close() end
      r = nil
    end)

    it("rate_limit:<Tab><Tab> lists its public methods, no internals", function()
      r = new_repl()
      r:start()
      r:type("rate_limit:")
      r:key("Tab")
      r:key("Tab")
      local screen = r:wait(function(s) return s:find("rate_limit:set_resource_config", 1, true) end,
                            "the list of rate_limit's methods")
      local names = listed(screen, "rate_limit:")
      for _, m in ipairs({ "acquire", "can_proceed", "record", "get_status", "get_wait_time",
                           "reset", "set_cooldown", "get_cooldown", "clear_cooldown", "clear",
                           "close", "get_resource_config", "set_resource_config" }) do
        assert(names[m], "rate_limit:" .. m .. " should be listed:\n" .. screen)
      end
      for _, m in ipairs({ "acquire_slot", "check_open", "config_error", "count_in_window",
                           "ms_text", "table_of", "ttl_of", "init", "new", "keys", "prepare",
                           "forget_slots", "delete_partitions", "config_for",
                           "check_resource_configs", "_VERSION" }) do
        assert(not names[m], "rate_limit:" .. m .. " is internal, yet listed:\n" .. screen)
      end
    end)

    it("client:ne<Tab> completes nothing (new is not a method); ddbkit.hash_r<Tab> does", function()
      r = new_repl()
      r:start()
      r:type("client:ne")
      r:key("Tab")
      r:type("X")
      r:wait(function(s) return last_line(s) == "ddbkit> client:neX" end, "'client:neX' as typed")
      r:key("C-u")
      r:type("ddbkit.hash_r")
      r:key("Tab")
      r:wait(function(s) return last_line(s) == "ddbkit> ddbkit.hash_request" end,
             "'ddbkit.hash_request' completed")
      r:type('("/users", { page = 2 })')
      local out = r:run("")
      assert(out:match('^"%x+"$') and #out == 66, "a SHA-256 hex digest:\n" .. out)
    end)
  end)

  describe("completion's rule (ddbkit.repl.complete)", function()
    local complete = require "ddbkit.repl.complete"
    local c, T
    setup(function()
      c = H.client()
      T = H.store_table(c, "repl-complete")
    end)
    teardown(function() c:delete_table{ TableName = T } end)

    local function methods(v)
      local env = { v = v }
      local set = {}
      for _, w in ipairs(complete.candidates("v:", "v:", env, {})) do set[w:sub(3)] = true end
      return set
    end

    it("every store: methods only, no internal", function()
      local stores = ddbkit.create_stores{ client = c, table_name = T }
      local internal = { "init", "new", "on_config", "on_clear", "acquire_slot", "table_of",
                         "count_in_window", "keys", "prepare", "config_for" }
      for field, want in pairs({ cache = "set_with_tags", dedupe = "register_or_join",
                                 rate_limit = "get_wait_time", adaptive_rate_limit = "strategy_info" }) do
        local m = methods(stores[field])
        assert(m[want], field .. ":" .. want .. " should be offered")
        for _, name in ipairs(internal) do
          assert(not m[name], field .. ":" .. name .. " is internal, yet offered")
        end
      end
      assert(methods(stores).close, "stores:close is a method")
      local native = ddbkit.ratelimit.new{ client = c, table_name = T, layout = "native" }
      assert(methods(native).acquire)
      assert.is_nil(methods(native).on_config)
    end)

    it("a lock handle: its documented methods, not the idempotency store's helpers", function()
      local h = assert(ddbkit.lock.new{ client = c, table_name = T,
                                        key = { pk = "LOCK#c", sk = "LOCK#c" } }:acquire{ lease_ms = 5000 })
      finally(function() h:release() end)
      local m = methods(h)
      for _, name in ipairs({ "renew", "release", "valid_ms", "held", "info", "keep",
                              "fence_condition" }) do
        assert(m[name], "h:" .. name .. " should be offered")
      end
      assert.is_nil(m.owner_condition)
      assert.is_nil(m.mark_released)
    end)

    it("after '.': no '_' names and no helpers; functions typed at the prompt count", function()
      local env = { ddbkit = ddbkit, fx = load("return function(self) end", "=input")() }
      local set = {}
      for _, w in ipairs(complete.candidates("ddbkit.ratelimit.", "", env, {})) do set[w] = true end
      assert(set["ddbkit.ratelimit.new"])
      assert.is_nil(set["ddbkit.ratelimit._VERSION"])
      assert.is_nil(set["ddbkit.ratelimit.init"])
      assert.is_nil(set["ddbkit.ratelimit.config_error"])
      assert.same({ "fx" }, complete.candidates("fx", "fx", env, {}))
      -- An object: its own fields and its class's methods, not the module's
      -- constructor or constants.
      env.rl = ddbkit.ratelimit.new{ client = c, table_name = T }
      set = {}
      for _, w in ipairs(complete.candidates("rl.", "", env, {})) do set[w] = true end
      assert(set["rl.acquire"] and set["rl.table_name"], "methods and own fields")
      assert.is_nil(set["rl.new"])
      assert.is_nil(set["rl.MAX_LIMIT"])
      assert.is_nil(set["rl.init"])
    end)
  end)

  describe("locals (ddbkit.repl.locals)", function()
    local cases = {
      { "local x = 1", " x = 1" },
      { "local a, b <const> = f()", " a, b  = f()" },
      { "local c", " c = nil" },
      { "local a <const>, b", " a , b = nil" },
      { "local function f() return f end", " function f() return f end" },
      { 'local s = "local y = 2" -- local z', ' s = "local y = 2" -- local z' },
      { "x = [[local k]] local m = [==[\n]]\n]==]", "x = [[local k]]  m = [==[\n]]\n]==]" },
      { "do local q = 1 end local r = 2", "do local q = 1 end  r = 2" },
      { "for i = 1, 2 do local y = i end", "for i = 1, 2 do local y = i end" },
      { "while true do local w = 1 break end", "while true do local w = 1 break end" },
      { "if a then local b = 1 elseif c then local d = 2 else local e = 3 end local g = 4",
        "if a then local b = 1 elseif c then local d = 2 else local e = 3 end  g = 4" },
      { "repeat local u = 1 until u local v = 0x1p+4", "repeat local u = 1 until u  v = 0x1p+4" },
      { "local f = function() local inner = 1 end local g = 2",
        " f = function() local inner = 1 end  g = 2" },
      { "local x <close> = nil", "local x <close> = nil" },
      { "local x = 'a\\'b' --[[ local c ]] local y = 2", " x = 'a\\'b' --[[ local c ]]  y = 2" },
      { 'local s = "unfinished', 'local s = "unfinished' },
      { "local t = {\n  1,\n  2 }", " t = {\n  1,\n  2 }" },
      { "local a <\nconst> = 1", " a \n = 1" },   -- found by fuzz_repl_locals
    }
    for _, case in ipairs(cases) do
      it(string.format("%q", case[1]), function()
        assert.equals(case[2], locals.rewrite(case[1]))
      end)
    end

    -- Random inputs made of Lua fragments: the rewrite never raises, keeps
    -- the lines, and what compiled before still compiles (and the other
    -- way: it only ever removes `local` and `<const>` or adds "= nil").
    it("random inputs: never raises, keeps lines, compiles as before", function()
      local parts = { "local x = 1", "local a, b", "local function f() end", "do", "end",
                      "if x then", "for i = 1, 2 do", "while false do", "repeat", "until true",
                      "'local s'", "\"q\\\"local\"", "[[local]]", "--[[ local ]]", "-- local c\n",
                      "\n", ";", "x = function()", "local y <const> = 2", "print(y)", "return" }
      local seed = 12345
      local function rand(n)
        seed = (seed * 16807) % 2147483647
        return seed % n + 1
      end
      for _ = 1, 2000 do
        local t = {}
        for i = 1, rand(8) do t[i] = parts[rand(#parts)] end
        local input = table.concat(t, " ")
        local out = locals.rewrite(input)
        local _, n1 = input:gsub("\n", "")
        local _, n2 = out:gsub("\n", "")
        assert.equals(n1, n2, input)
        if load(input, "=x") and not input:find("<const>", 1, true) then
          assert(load(out, "=x"), "compiled before, not after: " .. input .. " -> " .. out)
        end
      end
    end)
  end)

  describe("locals (in a terminal)", function()
    local r
    after_each(function()
      if r then r:close() end
      r = nil
    end)

    it("local x = ... typed or pasted stays for the next lines; block locals do not", function()
      r = new_repl()
      r:start()
      assert.equals("", (r:run("local x = 40")))
      assert.equals("42", (r:run("x + 2")))
      assert.equals("", (r:run("local function sq(n) return n * n end")))
      assert.equals("49", (r:run("sq(7)")))
      -- A README-style example pasted over several lines.
      r:run("local t = {")
      r:run("  name = \"local in a string\",")
      r:run("}")
      assert.equals('"local in a string"', (r:run("t.name")))
      assert.equals("", (r:run("do local hidden = 1 end")))
      assert.equals("nil", (r:run("hidden")))
      assert.equals("", (r:run("local a, b")))
      assert.equals("nil", (r:run("a")))
      -- A local kept shadows a global of the same name for the next inputs,
      -- and the global itself is untouched.
      assert.equals("", (r:run("local client = 5")))
      assert.equals("5", (r:run("client")))
      assert.equals('"table"', (r:run("type(_G.client)")))
    end)
  end)

  describe("results and :stats", function()
    it("no trailing nil after true or a value; nil, err prints both", function()
      local r = piped("function tn() return true, nil end\ntn()\n"
                      .. "function vn() return 7, nil, nil end\nvn()\n"
                      .. "function ne() return nil, 'why' end\nne()\nnil\n")
      exits(r, 0)
      assert.equals('true\n7\nnil\n"why"\nnil\n', r.out)
    end)

    it(":stats shows latencies in ms to 3 significant digits", function()
      local r = piped("client:list_tables{}\nclient:list_tables{}\n:stats\n")
      exits(r, 0)
      lacks(r.out, "latency_us")
      local lat = r.out:match("latency_ms = (%b{})")
      assert(lat, "a latency_ms table" .. show(r))
      contains(lat, "count = 2,")
      local n = 0
      for k, v in lat:gmatch("(%a[%w_]*) = ([%d.e+-]+)") do
        if k ~= "count" then
          n = n + 1
          local digits = v:gsub("^0%.0*", ""):gsub("%.", ""):gsub("0+$", "")
          assert(#digits <= 3, k .. " = " .. v .. " has more than 3 significant digits" .. show(r))
          assert(tonumber(v) < 60000, k .. " is in ms (under a minute)" .. show(r))
        end
      end
      assert.equals(6, n)
    end)
  end)

  describe("piped input", function()
    it("no banner; each kind of failure makes the exit status 1", function()
      for _, input in ipairs({ "x = = 1\n", ":bogus\n", "error('e')\n",
                               "client:describe_table{ TableName = 'nope-repl' }\n",
                               ":lock\n" }) do
        local r = piped(input .. "6 * 7\n")
        exits(r, 1)
        lacks(r.out, "Type :help", "stdout")
        lacks(r.out, "ddbkit 0.", "stdout")
      end
      local r = piped("6 * 7\n:help\n")
      exits(r, 0)
      assert(r.out:match("^42\n"), show(r))
      contains(r.out, "exit\nstatus is 1 when any input failed")
    end)

    it("an input left unfinished at the end is an error", function()
      local r = piped("function f()\n")
      exits(r, 1)
      contains(r.out, "incomplete input at the end: function f()")
    end)
  end)

  describe("record views", function()
    local c, T, IT
    local env
    setup(function()
      c = H.client()
      T = H.store_table(c, "repl-views")
      IT = H.unique("repl-idem")
      assert(c:create_table(schema.create_table_params(schema.IDEMPOTENCY_TABLE_SCHEMA, IT)))
      assert(c:wait_for_table(IT, 30000))
      env = { DDBKIT_TABLE = T, DDBKIT_IDEMPOTENCY_TABLE = IT }
    end)
    teardown(function()
      c:delete_table{ TableName = T }
      c:delete_table{ TableName = IT }
    end)

    local function view(cmd, pre)
      local r = piped((pre or "") .. cmd .. " --output json\n", nil, env)
      exits(r, 0)
      local l = lines_of(r.out)
      local v = jsjson.decode(l[#l])
      assert(type(v) == "table", "one JSON object" .. show(r))
      return v, r
    end

    local function locks(name)
      return ddbkit.lock.new{ client = c, table_name = T,
                              key = { pk = "LOCK#" .. name, sk = "LOCK#" .. name } }
    end

    it(":lock of a held lock whose holder renews: holder, fence, alive", function()
      local h = assert(locks("renewed"):acquire{ lease_ms = 3000 })
      local info = h:info()
      local k = assert(h:keep(200))
      finally(function()
        k:stop()
        h:release()
      end)
      local v = view(":lock renewed --watch 10000")
      assert.equals("held", v.state)
      assert.equals(info.owner, v.holder)
      assert.equals(info.fence, v.fence)
      assert.equals(3000, v.lease_ms)
      assert.equals("ddbkit", v.layout)
      assert.is_true(v.alive)
      assert(v.watched_ms <= 10000)
      -- The rows a person reads.
      local r = piped(":lock renewed\n", nil, env)
      exits(r, 0)
      assert(r.out:match("\nstate +held\n"), show(r))
      assert(r.out:match("\nholder +" .. info.owner:gsub("%p", "%%%0") .. "\n"), show(r))
      assert(r.out:match("\nalive +yes: renewed "), show(r))
    end)

    it(":lock of a held lock not renewed within the watch: alive unknown; released; free", function()
      local h = assert(locks("quiet"):acquire{ lease_ms = 60000 })
      local v = view(":lock quiet --watch 300")
      assert.equals("held", v.state)
      assert.equals(ddbkit.null, v.alive)
      assert(v.watched_ms >= 300 and v.expires_at_ms > v.acquired_at_ms)
      assert(h:release())
      v = view(":lock quiet")
      assert.equals("released", v.state)
      assert.is_nil(v.holder)
      assert.equals(h.fence, v.fence)
      v = view(":lock never-taken")
      assert.same({ lock = "never-taken", table = T, key = "LOCK#never-taken", state = "free" }, v)
    end)

    it(":lock's watch: shown at a terminal, and Ctrl-C stops it", function()
      local h = assert(locks("watched"):acquire{ lease_ms = 60000 })
      local r = new_repl()
      finally(function()
        r:close()
        h:release()
      end)
      r:start("--table " .. q(T))
      r:type(":lock watched --watch 60000")
      r:key("Enter")
      r:wait(function(s) return s:find("watching for a renewal, up to 60.0 s (Ctrl-C stops)", 1, true) end,
             "the watch to start")
      local before = count_prompts(r:screen())
      r:key("C-c")
      local screen = r:wait(function(s) return count_prompts(s) > before end, "a prompt after Ctrl-C")
      contains(screen, "\ninterrupted\n", "the screen")
      assert.equals(PROMPT, last_line(screen))
      assert.equals("2", (r:run("1 + 1")))
    end)

    it(":lock of a lease that ran out: expired, not alive", function()
      -- The engine's layout with an expiresAt already past (a holder that
      -- died without releasing).
      assert(c:put_item{ TableName = T, Item = { pk = "LOCK#dead", sk = "LOCK#dead",
        lockOwner = "gone:1", lockRvn = "r1", fence = 7, leaseMs = 1000,
        acquiredAt = 1000, expiresAt = 2 } })
      local v = view(":lock dead")
      assert.equals("expired", v.state)
      assert.is_false(v.alive)
      assert.equals("gone:1", v.holder)
    end)

    it(":limit of a full resource (Node layout) and its cooldown", function()
      local rl = ddbkit.ratelimit.new{ client = c, table_name = T,
                                       default_config = { limit = 3, window_ms = 60000 } }
      for _ = 1, 3 do assert.is_true(rl:acquire("api")) end
      assert.is_false(rl:acquire("api"))
      local until_ms = math.floor(c.runtime.now_ms()) + 30000
      assert(rl:set_cooldown("api", until_ms))
      local v = view(":limit api",
                     'rate_limit:set_resource_config("api", { limit = 3, window_ms = 60000 })\n')
      assert.equals("node", v.layout)
      assert.equals(3, v.limit)
      assert.equals(3, v.node.grants_in_window)
      assert.equals(0, v.node.remaining)
      assert.equals(3, v.node.slots_busy)
      assert(v.node.next_free_in_ms > 0 and v.node.next_free_in_ms <= 60000, "next free slot")
      assert.is_true(v.cooldown.active)
      assert.equals(until_ms, v.cooldown.until_ms)
      v = view(":limit other")
      assert.equals("none", v.layout)
      assert.is_nil(v.cooldown)
    end)

    it(":limit of a resource on the native layout", function()
      local rl = ddbkit.ratelimit.new{ client = c, table_name = T, layout = "native",
                                       default_config = { limit = 10, window_ms = 60000 } }
      assert.is_true(rl:acquire("napi"))
      local v = view(":limit napi",
                     'rate_limit:set_resource_config("napi", { limit = 10, window_ms = 60000 })\n')
      assert.equals("native", v.layout)
      assert(v.native.leased_in_window >= 1 and v.native.leased_in_window <= 10,
             "the lease counts: " .. tostring(v.native.leased_in_window))
      assert.equals(10 - v.native.leased_in_window, v.native.remaining)
      assert(v.native.version >= 1, "the item's version")
    end)

    it(":idem while the handler runs (owner), then the stored result", function()
      local idem = ddbkit.idempotency.new{ client = c, table_name = IT }
      local ck = idem:cache_key("order-1", {})
      local during
      local res = assert(idem:execute("order-1", {}, function()
        during = view(":idem " .. ck)
        return { id = 42, items = { "a", "b" } }
      end))
      assert.equals(42, res.id)
      assert.equals("in progress", during.state)
      assert(type(during.owner) == "string" and during.owner ~= "", "an owner")
      local v = view(":idem " .. ck)
      assert.equals("completed", v.state)
      assert.same({ id = 42, items = { "a", "b" } }, v.response)
      assert.is_nil(v.owner)
      v = view(":idem no-such-key")
      assert.equals("none", v.state)
      -- A handler's error is stored, tagged, and shown as the error.
      local eck = idem:cache_key("order-2", {})
      local none, herr = idem:execute("order-2", {}, function()
        error({ name = "PaymentDeclined", message = "card refused" })
      end)
      assert.is_nil(none)
      assert.truthy(herr)
      v = view(":idem " .. eck)
      assert.equals("completed", v.state)
      assert.same({ name = "PaymentDeclined", message = "card refused" }, v.error)
      assert.is_nil(v.response)
    end)

    it(":cache shows value, expiry and tags", function()
      local cache = ddbkit.cache.new{ client = c, table_name = T }
      assert(cache:set_with_tags("h1", { a = 1, list = { 1, 2 } }, 300, { "users", "page" }))
      local now = c.runtime.now_ms()
      local v = view(":cache h1")
      assert.is_true(v.found)
      assert.same({ a = 1, list = { 1, 2 } }, v.value)
      assert.same({ "page", "users" }, v.tags)
      assert(v.expires_at_ms > now and v.expires_at_ms <= now + 301000, "expiry")
      assert.is_false(v.expired)
      local r = piped(":cache h1\n", nil, env)
      exits(r, 0)
      assert(r.out:match("\ntags +page, users\n"), show(r))
      contains(r.out, "\nvalue\n{ a = 1, list = { 1, 2 } }\n")
      v = view(":cache missing")
      assert.is_false(v.found)
    end)

    -- What an item holds comes from anyone: no byte a terminal acts on
    -- (C0 but newline, DEL, C1 raw or as UTF-8) reaches it, in rows or JSON.
    it("hostile strings in the items are printed escaped, in rows and in JSON", function()
      local EVIL = "\27]0;pwned\7\27[2J\194\155\127"
      local json = assert(jsjson.stringify({ t = EVIL }))
      assert(c:put_item{ TableName = T, Item = { pk = "CACHE#evil", sk = "CACHE#evil",
        value = json, ttl = 0, createdAt = 1 } })
      assert(c:put_item{ TableName = T, Item = { pk = "LOCK#evil", sk = "LOCK#evil",
        lockOwner = EVIL, lockRvn = EVIL, fence = 1, leaseMs = 1000, acquiredAt = 1,
        expiresAt = 2 } })
      for _, cmd in ipairs({ ":cache evil", ":cache evil --output json", ":lock evil",
                             ":lock evil --output json" }) do
        local r = piped(cmd .. "\n", nil, env)
        exits(r, 0)
        local bad = r.out:find("[%z\1-\9\11-\31\127]") or r.out:find("\194[\128-\159]")
        assert(not bad, cmd .. ": a control byte at " .. tostring(bad) .. show(r))
        assert(r.out:find("pwned", 1, true), cmd .. show(r))
      end
      local v = view(":lock evil")
      assert.equals(EVIL, v.holder)   -- the JSON escapes are the same string
    end)

    it("bad arguments are errors (exit 1), each naming the usage", function()
      for _, cmd in ipairs({ ":lock", ":limit a b", ":idem k --output yaml", ":cache h --bogus",
                             ":lock x --watch soon" }) do
        local r = piped(cmd .. "\n", nil, env)
        exits(r, 1)
        assert(r.out:match("usage: :%a+") or r.out:match("must be"), cmd .. show(r))
      end
    end)
  end)
end)
