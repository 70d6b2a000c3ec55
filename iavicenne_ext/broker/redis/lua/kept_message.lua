-- The frame kept under one seq (without it), from the stream or, rewritten, from revised.
-- ARGV: tagged prefix, room, seq -> the frame | false
local room, seq = ARGV[2], ARGV[3]
if redis.call('EXISTS', key('meta', room)) == 0 then return false end
local row = redis.call('XRANGE', key('history', room), seq .. '-0', seq .. '-0')[1]
if row then return row[2][2] end
local member = redis.call('ZRANGEBYSCORE', key('revised', room), seq, seq)[1]
if member then return revised_frame(member) end
return false
