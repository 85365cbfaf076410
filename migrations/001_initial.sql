-- 001: berth's initial schema.
--
-- Uniqueness rules live here as constraints so that two requests racing each
-- other cannot both win: the platform package's pre-checks only give nicer
-- messages. Names are validated in Go (platform.Validate*); the CHECKs below are
-- a second line of defence against writers that bypass platform.

create table users (
	id            bigint generated always as identity primary key,
	name          text not null,
	role          text not null check (role in ('admin', 'member')),
	-- bcrypt hash for the web dashboard; null until a password is set.
	password_hash text,
	created_at    timestamptz not null default now(),
	constraint users_name_key unique (name),
	constraint users_name_check check (name ~ '^[a-z][a-z0-9._-]{0,31}$')
);

create table ssh_keys (
	id          bigint generated always as identity primary key,
	user_id     bigint not null references users (id) on delete cascade,
	name        text not null,
	-- SHA256:... as printed by ssh-keygen -l.
	fingerprint text not null,
	-- the normalized authorized_keys line (type, base64 key, comment).
	public_key  text not null,
	created_at  timestamptz not null default now(),
	constraint ssh_keys_fingerprint_key unique (fingerprint),
	constraint ssh_keys_user_name_key unique (user_id, name)
);

-- Each app gets a private 65536-wide range of host UIDs for its containers'
-- user namespace. The sequence is never reset, so a range is never reused,
-- even after the app is destroyed.
create sequence app_uid_base_seq as bigint start with 1000000 increment by 65536;

create table apps (
	id            bigint generated always as identity primary key,
	name          text not null,
	-- null when the app was made by the system actor (the local admin socket).
	owner_id      bigint references users (id) on delete set null,
	deploy_branch text not null default 'main',
	uid_base      bigint not null default nextval('app_uid_base_seq'),
	created_at    timestamptz not null default now(),
	constraint apps_name_key unique (name),
	constraint apps_uid_base_key unique (uid_base),
	constraint apps_name_check check (name ~ '^[a-z][a-z0-9-]{0,29}$')
);
alter sequence app_uid_base_seq owned by apps.uid_base;

create table app_shares (
	app_id     bigint not null references apps (id) on delete cascade,
	user_id    bigint not null references users (id) on delete cascade,
	created_at timestamptz not null default now(),
	primary key (app_id, user_id)
);
create index app_shares_user_idx on app_shares (user_id);

create table releases (
	id          bigint generated always as identity primary key,
	app_id      bigint not null references apps (id) on delete cascade,
	version     integer not null check (version > 0),
	-- image reference in berth's image store; empty for a release made by a
	-- config change before the first deploy.
	image       text not null default '',
	-- process type -> command, from the image (Procfile or CMD).
	processes   jsonb not null default '{}',
	-- config vars at the time of the release (values are secrets).
	config      jsonb not null default '{}',
	-- formation at the time of the release: process type -> quantity and limits.
	formation   jsonb not null default '{}',
	description text not null,
	created_by  text not null,
	created_at  timestamptz not null default now(),
	constraint releases_app_version_key unique (app_id, version)
);

create table config_vars (
	app_id bigint not null references apps (id) on delete cascade,
	key    text not null check (key ~ '^[A-Za-z_][A-Za-z0-9_]*$'),
	value  text not null,
	primary key (app_id, key)
);

create table formation (
	app_id       bigint not null references apps (id) on delete cascade,
	process_type text not null check (process_type ~ '^[a-z][a-z0-9_-]{0,29}$'),
	quantity     integer not null default 0 check (quantity >= 0),
	-- limits; 0 means no limit.
	memory_bytes bigint not null default 0 check (memory_bytes >= 0),
	cpu_millis   bigint not null default 0 check (cpu_millis >= 0),
	pids         bigint not null default 0 check (pids >= 0),
	disk_bytes   bigint not null default 0 check (disk_bytes >= 0),
	network_bps  bigint not null default 0 check (network_bps >= 0),
	primary key (app_id, process_type)
);

create table domains (
	hostname   text primary key check (hostname = lower(hostname)),
	app_id     bigint not null references apps (id) on delete cascade,
	created_at timestamptz not null default now()
);
create index domains_app_idx on domains (app_id);

create table certs (
	hostname   text primary key check (hostname = lower(hostname)),
	app_id     bigint references apps (id) on delete cascade,
	cert_pem   text not null,
	key_pem    text not null,
	not_after  timestamptz,
	created_at timestamptz not null default now()
);

create table deploys (
	id              bigint generated always as identity primary key,
	app_id          bigint not null references apps (id) on delete cascade,
	-- the release this deploy produced or rolls out; null until it exists.
	release_version integer,
	status          text not null default 'pending'
		check (status in ('pending', 'building', 'releasing', 'succeeded', 'failed')),
	reason          text not null default '',
	git_commit      text not null default '',
	build_log_path  text not null default '',
	created_by      text not null,
	started_at      timestamptz not null default now(),
	finished_at     timestamptz
);
create index deploys_app_idx on deploys (app_id, id desc);

create table containers (
	id                  bigint generated always as identity primary key,
	app_id              bigint not null references apps (id) on delete cascade,
	process_type        text not null,
	instance            integer not null check (instance > 0),
	release_version     integer not null,
	-- the engine's id for the container.
	engine_id           text not null,
	ip                  inet,
	host_pid            integer,
	state               text not null
		check (state in ('created', 'starting', 'running', 'stopping', 'stopped', 'exited', 'failed')),
	restarts            integer not null default 0,
	last_exit_reason    text not null default '',
	started_at          timestamptz,
	updated_at          timestamptz not null default now(),
	constraint containers_engine_id_key unique (engine_id)
);
create index containers_app_idx on containers (app_id, process_type, instance);
-- Two live containers must never share an address.
create unique index containers_ip_live_key on containers (ip)
	where ip is not null and state in ('created', 'starting', 'running', 'stopping');

create table web_sessions (
	-- SHA-256 of the session token; the token itself is never stored.
	token_hash text primary key,
	user_id    bigint not null references users (id) on delete cascade,
	created_at timestamptz not null default now(),
	expires_at timestamptz not null
);
create index web_sessions_user_idx on web_sessions (user_id);

create table api_tokens (
	id           bigint generated always as identity primary key,
	user_id      bigint not null references users (id) on delete cascade,
	name         text not null,
	-- SHA-256 of the token; the token itself is never stored.
	token_hash   text not null,
	created_at   timestamptz not null default now(),
	last_used_at timestamptz,
	constraint api_tokens_hash_key unique (token_hash),
	constraint api_tokens_user_name_key unique (user_id, name)
);
