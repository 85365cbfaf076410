-- 002: what the deploy package needs to reconcile after a daemon restart.

-- The release most recently rolled out with success: what a restarted daemon
-- runs. Null before the first successful rollout. (The newest release is not
-- it: a release whose rollout failed never served.)
alter table apps add column deployed_release integer check (deployed_release > 0);

-- ps:stop: the app's instances are stopped without changing its formation,
-- and stay stopped across daemon restarts until ps:start.
alter table apps add column stopped boolean not null default false;
