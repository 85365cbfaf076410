-- 003: the disk limit is the app's, not a process type's: one quota covers
-- the writable layers of all the app's containers. It moves from formation
-- (where each type had its own copy) to apps, keeping the largest copy.
alter table apps add column disk_bytes bigint not null default 0 check (disk_bytes >= 0);

update apps a set disk_bytes = f.disk_bytes
	from (select app_id, max(disk_bytes) as disk_bytes from formation group by app_id) f
	where f.app_id = a.id;

alter table formation drop column disk_bytes;
