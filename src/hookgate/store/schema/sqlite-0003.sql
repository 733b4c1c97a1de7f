-- Placeholder for the accept/Prefer branch's migration 0003, which replaces this file at merge.
SELECT 1;
