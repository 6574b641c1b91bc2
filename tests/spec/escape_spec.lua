-- ddbkit.pretty's escaping, the one every printer of the REPL and the
-- `ddbkit` command uses for what a server or a stored value says: no byte
-- that a terminal acts on (C0 controls, DEL, C1 as UTF-8 or raw) gets out.
-- (The command's own paths are driven end to end in cli_spec.lua.)
local pretty = require "ddbkit.pretty"
local core = require "ddbkit.core"

local EVIL = "\27]0;pwned\7\27[2J\27]52;c;ZXZpbA==\7"

-- Whether s holds a byte a terminal would act on (tab and newline allowed
-- when multiline).
local function unsafe(s, multiline)
  local c0 = multiline and "[%z\1-\8\11-\31\127]" or "[%z\1-\31\127]"
  return s:find(c0) or s:find("\194[\128-\159]") or s:find("[\128-\159]") ~= nil
end

describe("pretty.escape", function()
  it("escapes ESC, BEL and the rest of C0 and DEL, visibly", function()
    local out = pretty.escape("code" .. EVIL .. "\0\1\127")
    assert.falsy(unsafe(out))
    assert.equals("code\\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\x00\\x01\\x7f", out)
  end)

  it("escapes C1 controls written as UTF-8 (U+009B is CSI)", function()
    assert.equals("a\\u{9b}2J\\u{9d}0;t", pretty.escape("a\194\1552J\194\1570;t"))
  end)

  it("keeps other UTF-8 text as it is", function()
    assert.equals("héllo → ✓ \194\160nbsp", pretty.escape("héllo → ✓ \194\160nbsp"))
  end)

  it("escapes every byte >= 0x80 of text that is not UTF-8 (a raw 0x9B is CSI)", function()
    local out = pretty.escape("x\155[2Jé\255")
    assert.falsy(unsafe(out))
    assert.equals("x\\x9b[2J\\xc3\\xa9\\xff", out)
  end)

  it("one line by default; multiline keeps tabs and newlines, not CR", function()
    assert.equals("a\\nb\\tc\\rd", pretty.escape("a\nb\tc\rd"))
    assert.equals("a\nb\tc\\rd", pretty.escape("a\nb\tc\rd", true))
  end)

  it("takes any value, as tostring", function()
    assert.equals("42", pretty.escape(42))
    assert.equals("nil", pretty.escape(nil))
  end)
end)

describe("pretty.quote and pretty.format", function()
  it("quote escapes the same bytes, plus quote and backslash", function()
    assert.equals('"\\x1b\\u{9b}\\"\\\\é"', pretty.quote('\27\194\155"\\é'))
  end)

  it("format of a value holding escapes prints none of them", function()
    local v = { message = "m" .. EVIL, [EVIL] = true, list = { "\194\155", core.binary(EVIL) },
                err = setmetatable({ code = "C" .. EVIL }, core.error_mt) }
    local out = pretty.format(v)
    assert.falsy(unsafe(out, true))
    assert.truthy(out:find("\\x1b]52;c;ZXZpbA==\\x07", 1, true))
  end)

  it("format escapes what a __tostring says", function()
    local ud = setmetatable({}, { __tostring = function() return "ud" .. EVIL end })
    local out = pretty.format(coroutine.create(function() end)) .. pretty.format(ud)
    assert.falsy(unsafe(out, true))
  end)
end)
