-- Connection churn: every event connects, runs SELECT 1, reads the row and disconnects.
-- Run with sysbench's usual --mysql-* options, e.g.
--   sysbench bench/churn.lua --db-driver=mysql --mysql-host=... --threads=1 --time=10 run
-- events/s is then connections/s (libmariadb's mysql_close sends COM_QUIT).

function thread_init()
   drv = sysbench.sql.driver()
end

function event()
   local con = drv:connect()
   local rs = con:query("SELECT 1")
   if rs ~= nil then
      rs:free()
   end
   con:disconnect()
end
