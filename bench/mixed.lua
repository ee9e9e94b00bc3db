-- Point selects with a small share of single-row updates (autocommit), for
-- comparing row-level invalidation (sqlcache) with table-level (MariaDB's
-- query cache). --write-pct sets the share of updates.
require("oltp_common")

sysbench.cmdline.options.write_pct = {"Percent of events that are single-row UPDATEs", 3}

function prepare_statements()
   -- plain text queries: MariaDB's query cache only serves the text protocol
end

function event()
   local id = sysbench.rand.default(1, sysbench.opt.table_size)
   if sysbench.rand.uniform(1, 100) <= sysbench.opt.write_pct then
      con:query(string.format("UPDATE sbtest1 SET k = k + 1 WHERE id = %d", id))
   else
      con:query(string.format("SELECT c FROM sbtest1 WHERE id = %d", id))
   end
end
