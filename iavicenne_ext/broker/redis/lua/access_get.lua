-- A room's access record. ARGV: tagged prefix, room -> {} (none) | {kind, owner, group, member...}
return access_record(ARGV[2])
