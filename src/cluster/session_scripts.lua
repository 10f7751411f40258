-- Shared by every session script: ARGV[1] is the key prefix, ARGV[2] the
-- session id. Keys: s:{id} (hash: owner, created, updated, turns,
-- messages, bytes), t:{id} (list of turns, each "messages:bytes:json"),
-- l:{id} (the live stream's lease), u:{owner} (zset: the owner's
-- sessions by last use), sessions (zset: every session by last use).
local p, id = ARGV[1], ARGV[2]
local function skey(v) return p .. 's:' .. v end
local function tkey(v) return p .. 't:' .. v end
local function lkey(v) return p .. 'l:' .. v end
local function ukey(o) return p .. 'u:' .. o end
local all = p .. 'sessions'

local function remove(v)
  local owner = redis.call('HGET', skey(v), 'owner')
  redis.call('DEL', skey(v), tkey(v))
  redis.call('ZREM', all, v)
  if owner then redis.call('ZREM', ukey(owner), v) end
end

-- Evict the least recently used sessions of zset z (not busy, not id)
-- until fewer than max are left; entries whose session expired are
-- dropped without counting. Returns the evictions.
local function make_room(z, max)
  local n = redis.call('ZCARD', z)
  if n < max then return 0 end
  local gone = 0
  local ids = redis.call('ZRANGE', z, 0, n - max + 64)
  for _, v in ipairs(ids) do
    if n < max then break end
    if v ~= id then
      if redis.call('EXISTS', skey(v)) == 0 then
        redis.call('ZREM', z, v)
        n = n - 1
      elseif redis.call('EXISTS', lkey(v)) == 0 then
        remove(v)
        n = n - 1
        gone = gone + 1
      end
    end
  end
  return gone
end

local function touch(owner, now, ttl)
  redis.call('ZADD', ukey(owner), now, id)
  redis.call('ZADD', all, now, id)
  redis.call('PEXPIRE', skey(id), ttl)
  redis.call('PEXPIRE', tkey(id), ttl)
  redis.call('PEXPIRE', ukey(owner), ttl)
end
