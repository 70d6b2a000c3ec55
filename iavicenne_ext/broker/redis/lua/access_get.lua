-- A room's access record. ARGV: prefix, room -> {} (none) | {kind, owner, group, member...}
return access_record(ARGV[2])
