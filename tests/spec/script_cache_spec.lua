-- store.load_script reads a policy or strategy file once per process: a
-- store made later (in nginx, on a request path) does no disk I/O for it.
-- store.forget_scripts() is the reload. No server needed.
local store = require "ddbkit.store"

local WHAT = "key-prefix policy"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function policy_text(prefix)
  return "return { name = 'p', prefix = function(kind) return '" .. prefix .. "' .. kind .. '#' end }"
end

describe("store.load_script", function()
  local path

  before_each(function()
    local base = os.tmpname()   -- creates the file: only its name is wanted
    os.remove(base)
    path = base .. ".lua"
    write(path, policy_text("A"))
  end)
  after_each(function()
    os.remove(path)
    if store.forget_scripts then store.forget_scripts() end
  end)

  it("reads a file once: later loads run the compiled chunk, without the file", function()
    local a = store.load_script(path, nil, WHAT)
    assert(os.remove(path))
    local ok, b = pcall(store.load_script, path, nil, WHAT)
    assert.is_true(ok, tostring(b))
    assert.are.equal("Acache#", b.prefix("cache"))
    assert.are_not.equal(a, b)   -- each store still gets its own table
    -- store.policy (what every store's new calls) goes the same way
    assert.are.equal("Acache#", store.policy(path).prefix("cache"))
  end)

  it("reads the file again after forget_scripts (a reload picks up edits)", function()
    assert.are.equal("Acache#", store.load_script(path, nil, WHAT).prefix("cache"))
    write(path, policy_text("B"))
    assert.are.equal("Acache#", store.load_script(path, nil, WHAT).prefix("cache"))
    store.forget_scripts()
    assert.are.equal("Bcache#", store.load_script(path, nil, WHAT).prefix("cache"))
  end)

  it("does not keep a file that failed to load", function()
    write(path, "return {")
    assert.has_error(function() store.load_script(path, nil, WHAT) end)
    write(path, policy_text("C"))
    assert.are.equal("Ccache#", store.load_script(path, nil, WHAT).prefix("cache"))
  end)
end)
