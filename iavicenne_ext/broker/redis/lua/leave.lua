-- ARGV: tagged prefix, room, server id, user_id, conn, history ttl ms -> 1 when the user left the room
if remove_entry(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]) then return 1 end
return 0
