-- How users get ddbkit, each way run for real in a scratch directory
-- (mktemp, removed after), with no network:
--   * `make install PREFIX=scratch`: the versioned library with its SONAME
--     and .so symlinks, the header, ddbkit.pc, the Lua modules for 5.4 and
--     5.1 (resty.ddbkit included) and the message saying how programs find
--     a library outside the linker's directories; then the README's C quick
--     start (its first ```c block) compiled with pkg-config against that
--     prefix and run against DynamoDB Local;
--   * `luarocks make` from the checkout into a scratch tree, for Lua 5.4
--     and (--lua-version=5.1) for LuaJIT, then lua5.4 and luajit loading
--     ddbkit and resty.ddbkit from that tree only and making one call;
--   * the version: engine/ddbkit.h's DDBK_VERSION is the one place, and the
--     rockspec, CHANGELOG.md's top entry, the installed ddbkit.pc and every
--     module's _VERSION agree with it.
local H = require "test_helper"

local q = H.shell_quote
local ROOT = H.spec_dir() .. "/../.."

-- Runs cmd (a shell line), bounded; its output and whether it exited 0.
-- Without the sanitized run's LD_PRELOAD: nothing here loads the checkout's
-- ddbkit.core (make, cc, luarocks and the interpreters run from scratch).
local function sh(cmd, seconds)
  local p = assert(io.popen(string.format("env -u LD_PRELOAD timeout -k 5 %d sh -c %s",
    seconds or 300, q(cmd .. " 2>&1"))))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok == true or code == 0
end

local function version()
  local h = assert(H.read_file(ROOT .. "/engine/ddbkit.h"))
  return assert(h:match('#define DDBK_VERSION "([^"]+)"'), "engine/ddbkit.h has no DDBK_VERSION")
end

local function first_block(lang)
  local text = assert(H.read_file(ROOT .. "/README.md"))
  local block = text:match("\n```" .. lang .. "[ \t]*\n(.-)\n```")
  return assert(block, "README.md has no ```" .. lang .. " block")
end

local function exists(path)
  local _, ok = sh("test -e " .. q(path))
  return ok
end

describe("make install into a scratch PREFIX", function()
  local prefix, out, ok

  setup(function()
    prefix = H.mktemp_dir()
    out, ok = sh("make -C " .. q(ROOT) .. " --no-print-directory install PREFIX=" .. q(prefix))
  end)
  teardown(function()
    sh("rm -rf " .. q(prefix))
    -- install compiled the scratch PREFIX into build/ddbkit (its installed
    -- paths); build it again for the default PREFIX, as `make` left it.
    sh("make -C " .. q(ROOT) .. " --no-print-directory build/ddbkit")
  end)

  it("installs the library with its SONAME, the header, ddbkit.pc and the Lua modules", function()
    assert.is_true(ok, out)
    local v = version()
    local lib = prefix .. "/lib/"
    local readelf = sh("readelf -d " .. q(lib .. "libddbkit.so." .. v))
    local soname = readelf:match("SONAME%)%s+Library soname: %[([^%]]+)%]")
    assert.is_truthy(soname, readelf)
    assert.equals(soname, (sh("readlink " .. q(lib .. "libddbkit.so")):gsub("%s+$", "")))
    assert.equals("libddbkit.so." .. v, (sh("readlink " .. q(lib .. soname)):gsub("%s+$", "")))
    for _, f in ipairs{ "include/ddbkit.h", "lib/pkgconfig/ddbkit.pc",
                        "lib/lua/5.4/ddbkit/core.so", "lib/lua/5.1/ddbkit/core.so",
                        "share/lua/5.4/ddbkit/init.lua", "share/lua/5.1/ddbkit/init.lua",
                        "share/lua/5.4/resty/ddbkit.lua", "share/lua/5.1/resty/ddbkit.lua",
                        "share/lua/5.4/ddbkit/scripts/strategies/adaptive.lua",
                        "share/lua/5.1/ddbkit/scripts/policies/key_prefix.lua" } do
      assert.is_true(exists(prefix .. "/" .. f), "missing " .. f)
    end
  end)

  it("says how programs find a library the dynamic linker does not search", function()
    assert.is_true(ok, out)
    assert.matches("LD_LIBRARY_PATH=" .. prefix:gsub("%p", "%%%0") .. "/lib", out)
    assert.matches("ldconfig", out)
  end)

  it("writes a ddbkit.pc with the version and the prefix", function()
    local pc = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig") .. " pkg-config "
    assert.equals(version(), (sh(pc .. "--modversion ddbkit"):gsub("%s+$", "")))
    local flags = sh(pc .. "--cflags --libs ddbkit")
    assert.matches("-I" .. prefix:gsub("%p", "%%%0") .. "/include", flags)
    assert.matches("-lddbkit", flags, 1, true)
  end)

  it("installs a ddbkit command that runs the prefix's Lua modules", function()
    assert.is_true(ok, out)
    H.write_file(prefix .. "/where.lua", 'print("lua " .. package.searchpath("ddbkit", package.path))\n'
      .. 'print("version " .. require("ddbkit")._VERSION)\n')
    local run, ran = sh("cd " .. q(prefix) .. " && unset LUA_PATH LUA_CPATH && ./bin/ddbkit --endpoint "
      .. q(H.endpoint) .. " --region us-east-1 run where.lua", 60)
    assert.is_true(ran, run)
    assert.matches("lua " .. prefix:gsub("%p", "%%%0") .. "/share/lua/5%.4/ddbkit/init%.lua", run)
    assert.matches("version " .. version():gsub("%p", "%%%0"), run)
  end)

  it("compiles the README's C quick start with pkg-config and runs it", function()
    assert.is_true(ok, out)
    H.write_file(prefix .. "/quick.c", first_block("c") .. "\n")
    local cc_out, built = sh("cd " .. q(prefix) .. " && cc -o quick quick.c $(PKG_CONFIG_PATH="
      .. q(prefix .. "/lib/pkgconfig") .. " pkg-config --cflags --libs ddbkit)")
    assert.is_true(built, cc_out)
    local run, ran = sh("LD_LIBRARY_PATH=" .. q(prefix .. "/lib") .. " DDBKIT_ENDPOINT="
      .. q(H.endpoint) .. " " .. q(prefix .. "/quick"), 60)
    assert.is_true(ran, run)
    assert.matches("PutItem: {}", run, 1, true)
    assert.matches('GetItem: {"Item":', run, 1, true)
    assert.matches('"pk":{"S":"player-7"}', run, 1, true)
  end)
end)

-- A script that loads ddbkit and resty.ddbkit from the tree and makes one
-- call; it prints where each came from.
local CALL = [[
local ddbkit = require "ddbkit"
assert(require "resty.ddbkit" == ddbkit, "resty.ddbkit is not ddbkit")
local c = assert(ddbkit.client{ endpoint = os.getenv("DDBKIT_TEST_ENDPOINT"), region = "us-east-1",
  credentials = { access_key_id = "local", secret_access_key = "local" } })
local res, err = c:list_tables{}
if not res then error(tostring(err)) end
assert(type(res.TableNames) == "table", "ListTables returned no TableNames")
print("version " .. ddbkit._VERSION)
print("lua " .. package.searchpath("ddbkit", package.path))
print("core " .. package.searchpath("ddbkit.core", package.cpath))
print("strategy " .. tostring(package.searchpath("ddbkit.scripts.strategies.adaptive", package.path)))
]]

for _, flavour in ipairs{ { lua = "5.4", interp = "lua5.4" }, { lua = "5.1", interp = "luajit" } } do
  describe("luarocks make --lua-version=" .. flavour.lua .. " into a scratch tree, run by "
           .. flavour.interp, function()
    local tree, out, ok

    setup(function()
      tree = H.mktemp_dir()
      out, ok = sh("cd " .. q(ROOT) .. " && luarocks make --lua-version=" .. flavour.lua
        .. " --deps-mode=none --tree=" .. q(tree))
    end)
    teardown(function() sh("rm -rf " .. q(tree)) end)

    it("builds and installs ddbkit.core, the modules and the scripts", function()
      assert.is_true(ok, out)
      local lmod, cmod = tree .. "/share/lua/" .. flavour.lua, tree .. "/lib/lua/" .. flavour.lua
      for _, f in ipairs{ cmod .. "/ddbkit/core.so", lmod .. "/ddbkit/init.lua",
                          lmod .. "/resty/ddbkit.lua", lmod .. "/ddbkit/scripts/strategies/adaptive.lua",
                          lmod .. "/ddbkit/scripts/examples/game_server.lua" } do
        assert.is_true(exists(f), "missing " .. f)
      end
    end)

    it("loads ddbkit and resty.ddbkit from the tree and makes a call", function()
      assert.is_true(ok, out)
      H.write_file(tree .. "/call.lua", CALL)
      -- The tree's paths first, then the system's (for lua-cjson); run from
      -- the tree, so nothing comes from the checkout (the suite's LUA_PATH
      -- names it: unset first, as luarocks path adds what it finds there).
      local paths = "unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 && eval \"$(luarocks --lua-version=" .. flavour.lua .. " --tree=" .. q(tree)
        .. " path)\" && export LUA_PATH LUA_CPATH"
      local run, ran = sh("cd " .. q(tree) .. " && " .. paths .. " && DDBKIT_TEST_ENDPOINT="
        .. q(H.endpoint) .. " " .. flavour.interp .. " call.lua", 60)
      assert.is_true(ran, run)
      local esc = tree:gsub("%p", "%%%0")
      assert.matches("version " .. version():gsub("%p", "%%%0"), run)
      assert.matches("lua " .. esc .. "/share/lua/" .. flavour.lua .. "/ddbkit/init.lua", run)
      assert.matches("core " .. esc .. "/lib/lua/" .. flavour.lua .. "/ddbkit/core.so", run)
      assert.matches("strategy " .. esc, run)
    end)
  end)
end

describe("the version", function()
  it("is engine/ddbkit.h's, and the rockspec's name and version say the same", function()
    local v = version()
    local ls = sh("cd " .. q(ROOT) .. " && ls *.rockspec")
    assert.equals("ddbkit-" .. v .. "-1.rockspec", (ls:gsub("%s+$", "")))
    local spec = assert(H.read_file(ROOT .. "/ddbkit-" .. v .. "-1.rockspec"))
    assert.equals(v .. "-1", spec:match('\nversion%s*=%s*"([^"]+)"'))
    assert.equals("v" .. v, spec:match('tag%s*=%s*"([^"]+)"'))
  end)

  it("heads CHANGELOG.md", function()
    local log = assert(H.read_file(ROOT .. "/CHANGELOG.md"), "CHANGELOG.md not found")
    local top = log:match("\n## %[([^%]]+)%]")
    assert.equals(version(), top)
  end)

  it("is every Lua module's _VERSION", function()
    local v = version()
    local files = sh("cd " .. q(ROOT) .. " && grep -rl '_VERSION *= *\"' lua")
    local n = 0
    for f in files:gmatch("[^\n]+") do
      local text = assert(H.read_file(ROOT .. "/" .. f))
      for found in text:gmatch('_VERSION%s*=%s*"([^"]*)"') do
        n = n + 1
        assert.equals(v, found, f .. "'s _VERSION")
      end
    end
    assert.is_true(n > 0, "no _VERSION literal found under lua/")
  end)

  it("is what ddbkit._VERSION reports", function()
    assert.equals(version(), require("ddbkit")._VERSION)
  end)
end)
