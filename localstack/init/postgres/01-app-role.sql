-- The functions connect as okyaku_app, which owns nothing, so row-level security applies to it.
-- The migrations (run as okyaku_owner) grant it what it needs.
CREATE ROLE okyaku_app LOGIN PASSWORD 'okyaku_app';
