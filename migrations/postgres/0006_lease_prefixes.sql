-- The named leases (0003) by the prefix of their names, in byte order (`text_pattern_ops`,
-- whatever the database's collation): the presence leases (`replica/HOLDER`) are counted at every
-- pass of every replica, and those of processes gone removed, without reading every incident's
-- lease. The names never change, so claims and renewals stay HOT updates.

CREATE INDEX leases_by_prefix ON leases (name text_pattern_ops);
