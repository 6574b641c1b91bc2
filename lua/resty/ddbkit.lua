-- resty.ddbkit: the name OpenResty users look for (lua-resty-* libraries
-- live under resty.*). It is ddbkit itself, the same table:
-- require "resty.ddbkit" == require "ddbkit". The nginx request handlers
-- are ddbkit.resty (require "ddbkit.resty"), not this module.
return require "ddbkit"
