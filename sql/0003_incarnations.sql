-- 0003_incarnations: each registration's incarnation (the registering process's session id), so
-- a Redis rebuilt from Postgres keeps it and the live process's calls still match.
--
-- Written with the registration columns (by the latest registration). NULL in rows registered
-- before this migration and in placeholder rows; a rebuild gives such a row a new incarnation.
ALTER TABLE specialists ADD COLUMN incarnation text;
