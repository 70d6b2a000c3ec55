-- ARGV: tagged prefix, room, server id, conn, user_id, skeleton of user_id, username, entry
--       JSON, the room whose access record applies (the chat room of a signaling room)
-- -> {'first' | 'again' | 'present', access record as access_get returns it} | {'taken'}
-- The record is read after the entry was added, in the same step: a record created
-- before this join is seen here, and none can be created after it while the room has
-- members (access_create), so the hub's check after joining needs no request of its own.
-- The server listed the room in its rooms-of set before this (broker.py), so a sweep of
-- this server, should it die, finds the entry.
local outcome = add_entry(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
if outcome == 'taken' then return {outcome} end
return {outcome, access_record(ARGV[9])}
