#!/usr/bin/python3
"""Through openstacksdk alone (conn.block_storage, found by keystoneauth's version discovery in
Keystone's catalog; credentials from OS_* variables): create a volume, back it up, restore the
backup under a new name, find the restored volume by name, clean up. Prints one line per step;
exits non-zero on any failure."""
import sys
import uuid

import openstack

conn = openstack.connect()   # OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, OS_REGION_NAME, ...
bs = conn.block_storage
name = "sdk-" + uuid.uuid4().hex[:8]

volume = bs.create_volume(size=1, name=name)
volume = bs.wait_for_status(volume, status="available", failures=["error"], interval=1, wait=120)
print("volume", volume.id, volume.status)

backup = bs.create_backup(volume_id=volume.id, name=name + "-backup")
backup = bs.wait_for_status(backup, status="available", failures=["error"], interval=1, wait=120)
print("backup", backup.id, backup.status)

bs.restore_backup(backup, name=name + "-restored")
restored = bs.find_volume(name + "-restored", ignore_missing=False)
restored = bs.wait_for_status(restored, status="available", failures=["error", "error_restoring"], interval=1, wait=120)
print("restored", restored.id, restored.status, restored.name)
bs.wait_for_status(bs.get_backup(backup.id), status="available", failures=["error"], interval=1, wait=120)

bs.delete_backup(backup)
bs.wait_for_delete(backup, interval=1, wait=120)
for v in (volume, restored):
    bs.delete_volume(v)
    bs.wait_for_delete(v, interval=1, wait=120)
print("cleaned up")
sys.exit(0)
