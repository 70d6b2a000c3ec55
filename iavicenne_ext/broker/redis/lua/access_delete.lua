-- Delete a room's access record, and its history with it: what was said in a private
-- room must not be replayed to whoever joins it once it is public. The room's next life
-- gets a new epoch (ensure_room), so clients know their seqs are void. The broker then
-- releases the owner's reservation (access_reserve.lua) and history-total's bytes.
-- ARGV: tagged prefix, room -> {owner, delta of history-total} | {} (no record)
local room = ARGV[2]
local record = key('access', room)
local owner = redis.call('HGET', record, 'owner')
if not owner then return {} end
redis.call('DEL', record, key('access-members', room), key('access-muted', room), key('access-removed', room))
redis.call('DEL', key('history', room), key('meta', room), key('revised', room), key('read', room))
forget_sizes(room)
return {owner, DELTA}
