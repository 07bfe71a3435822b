-- sqlite3 workload for the preload tests: 120,000 rows built by a recursive CTE,
-- two indexes, aggregate and sorted queries, updates and deletes, then the checks
-- again. Every value is a function of the row number, so the output is fixed
-- (sqlite_expected.txt, whose numbers were also recomputed independently in Python,
-- not only by sqlite on glibc). The page cache is large enough (256 MiB) that a
-- file database stays in memory too, so the workload's peak is about the same.
.bail on
.headers off
.mode list
PRAGMA cache_size = -262144;

CREATE TABLE t(
  id INTEGER PRIMARY KEY,
  grp INTEGER NOT NULL,
  val INTEGER NOT NULL,
  name TEXT NOT NULL,
  body TEXT NOT NULL
);

-- body: 20..219 copies of one letter, then the row number; random-ish lengths make
-- the records (and sqlite's own allocations) vary in size.
WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < 120000)
INSERT INTO t(id, grp, val, name, body)
SELECT x, x % 97, (x * 2654435761) % 1000003,
       printf('name-%07d-%d', (x * 7919) % 1000003, x),
       printf('%.*c%d', 20 + (x * 31) % 200, char(97 + x % 26), x)
FROM seq;

CREATE INDEX t_grp_val ON t(grp, val);
CREATE INDEX t_name ON t(name);

-- count, sum(val), total body length
SELECT 'totals', count(*), sum(val), sum(length(body)) FROM t;
-- the first and last groups through the (grp, val) index
SELECT 'group', grp, count(*), sum(val), min(val), max(val) FROM t
  WHERE grp IN (0, 1, 50, 96) GROUP BY grp ORDER BY grp;
-- an index range scan on name
SELECT 'names', name FROM t WHERE name >= 'name-0500000' ORDER BY name LIMIT 3;
-- a sort that cannot use an index, and a window function over all rows
SELECT 'sorted', id, length(body) FROM t ORDER BY length(body) DESC, val LIMIT 3;
SELECT 'window', sum(rn * (val % 13)) FROM
  (SELECT val, row_number() OVER (ORDER BY body, id) AS rn FROM t);
-- a self join on a computed key
SELECT 'join', count(*), sum(a.val - b.val) FROM t a JOIN t b ON b.id = a.id + 97
  WHERE a.grp = 5;

-- Grow one row in ten (the records move between pages), drop a group, rebuild.
UPDATE t SET body = body || body || name WHERE id % 10 = 0;
DELETE FROM t WHERE grp = 13;
SELECT 'after', count(*), sum(val), sum(length(body)) FROM t;
SELECT 'group-sizes', count(*), sum(n), min(n), max(n) FROM
  (SELECT grp, count(*) AS n FROM t GROUP BY grp);
REINDEX;
VACUUM;
SELECT 'integrity', integrity_check FROM pragma_integrity_check;
SELECT 'final', count(*), sum(length(body)), sum(length(name)) FROM t;
