#!lua name=earshot
-- store.lua - the queue and presence that earshot nodes share in Redis:
-- the rules of server/matcher.c as Redis Functions, so that each event is
-- one atomic step however many nodes call at once (no client offered
-- twice, no counselor with two offers, FIFO across the cluster). Loaded
-- by store_redis.c with FUNCTION LOAD REPLACE on every connect.
--
-- Names: a node is its node-id; a connection is "<node>/<conn id>" (gid).
-- Events for a counselor go to its node's list earshot:ev:<node> as one
-- line each ("offer ...", "gone ...", "state ...", "matched ..."); the
-- node pops them in order. Every function takes the rules first:
--   ring_ms wrapup_ms redecline_ms max_missed max_queue handle_ms ev_ttl_ms
--   topic_wait_ms previous_wait_ms memory_ms crisis_wrapup_ms
--   shift_sessions shift_ms
-- then its own arguments. Times are Redis' clock, in ms.

local P = 'earshot:'
local QUEUE = P .. 'queue'          -- ZSET client gid -> arrival number
local AVAIL = P .. 'avail'          -- ZSET available counselor gid -> idle since
local DEADLINES = P .. 'deadlines'  -- ZSET counselor gid -> ring / wrap-up end
local COUNTS = P .. 'counts'        -- HASH state -> counselors in it
local NODES = P .. 'nodes'          -- SET node ids ever registered and not swept
local STATS = P .. 'stats'          -- HASH served abandoned handle_ms qver qseq offer_seq
                                    --      rated rated_sum (every rating, and their sum)
local LAPSES = P .. 'lapses'        -- ZSET "<client gid>|p" / "|t" -> when a preference lapses
local RATED = P .. 'rated'          -- ZSET counselor subs ever rated, all at 0: in byte order
local RTOPICS = P .. 'rtopics'      -- ZSET topics ever rated, likewise
local NARGS = 13
local STATES = { 'away', 'available', 'ringing', 'busy', 'wrapup' }

local function kkey(g) return P .. 'k:' .. g end
local function ckey(g) return P .. 'c:' .. g end
local function nodekey(n) return P .. 'node:' .. n end
local function evkey(n) return P .. 'ev:' .. n end
local function nkkey(n) return P .. 'nk:' .. n end  -- SET the node's counselors
local function nckey(n) return P .. 'nc:' .. n end  -- SET the node's client entries
local function figkey(n) return P .. 'fig:' .. n end -- the node's own figures
local function skillkey(t) return P .. 'skill:' .. t end -- SET online counselors with the skill
local function subkey(sub) return P .. 'ksub:' .. (sub or '') end -- a counselor's gid by sub
local function prevkey(who) return P .. 'prev:' .. who end -- whom a person talked with last
-- Feedback, never tied to a session, a person or a time:
local function rkkey(sub) return P .. 'rk:' .. sub end -- HASH count sum h1..h5 of a counselor
local function rckey(sub) return P .. 'rc:' .. sub end -- LIST their last comments, newest first
local function rtkey(t) return P .. 'rt:' .. t end     -- HASH count sum h1..h5 of a topic

local C  -- the rules of this call

local function rules(args)
  C = { ring_ms = tonumber(args[1]), wrapup_ms = tonumber(args[2]),
        redecline_ms = tonumber(args[3]), max_missed = tonumber(args[4]),
        max_queue = tonumber(args[5]), handle_ms = tonumber(args[6]),
        ev_ttl_ms = tonumber(args[7]), topic_wait_ms = tonumber(args[8]),
        previous_wait_ms = tonumber(args[9]), memory_ms = tonumber(args[10]),
        crisis_wrapup_ms = tonumber(args[11]), shift_sessions = tonumber(args[12]),
        shift_ms = tonumber(args[13]) }
end

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function get(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- Positions and estimates may have moved: nodes look again.
local function bump() redis.call('HINCRBY', STATS, 'qver', 1) end

local function emit(node, ...)
  local key = evkey(node)
  redis.call('RPUSH', key, table.concat({ ... }, ' '))
  redis.call('PEXPIRE', key, C.ev_ttl_ms)
end

-- A counselor comes online (not away) with their skills, or leaves.
local function skills_online(g, k, on)
  for topic in string.gmatch(k.skills or '', '[^,]+') do
    redis.call(on and 'SADD' or 'SREM', skillkey(topic), g)
  end
end

-- `for_ms`: the length of a break (state away, reason break).
local function set_state(g, k, st, reason, for_ms)
  if (k.state == 'away') ~= (st == 'away') then skills_online(g, k, st ~= 'away') end
  redis.call('HINCRBY', COUNTS, k.state, -1)
  redis.call('HINCRBY', COUNTS, st, 1)
  k.state = st
  redis.call('HSET', kkey(g), 'state', st)
  if st == 'available' then
    redis.call('ZADD', AVAIL, tonumber(k.idle_since), g)
  else
    redis.call('ZREM', AVAIL, g)
  end
  if st ~= 'ringing' and st ~= 'wrapup' then redis.call('ZREM', DEADLINES, g) end
  emit(k.node, 'state', k.conn, st, reason or '-', for_ms or 0)
  bump()
end

-- The counselor has done their shift: enough sessions, or hours.
local function shift_over(k, t)
  return (C.shift_sessions > 0 and tonumber(k.sessions or 0) >= C.shift_sessions) or
         (C.shift_ms > 0 and t >= tonumber(k.shift_start or t) + C.shift_ms)
end

-- Back to taking offers, unless their shift is over.
local function back_available(g, k, t, reason)
  redis.call('HSET', kkey(g), 'break_until', 0)
  if shift_over(k, t) then
    set_state(g, k, 'away', 'shift_over')
  else
    set_state(g, k, 'available', reason)
  end
end

-- Away for a break of `ms` from now; back by es_tick.
local function start_break(g, k, ms, t)
  set_state(g, k, 'away', 'break', ms)
  redis.call('HSET', kkey(g), 'break_until', t + ms, 'break_ms', 0)
  redis.call('ZADD', DEADLINES, t + ms, g)
end

-- "gid@at,gid@at": who recently passed on this client.
local function declined_recently(c, kg, t)
  for g, at in string.gmatch(c.declined, '([^,@]+)@(%d+)') do
    if g == kg and t - tonumber(at) < C.redecline_ms then return true end
  end
  return false
end

local function remember_decline(cg, c, kg, t)
  local list = {}
  for g, at in string.gmatch(c.declined, '([^,@]+)@(%d+)') do
    if g ~= kg then list[#list + 1] = { g, tonumber(at) } end
  end
  table.sort(list, function(a, b) return a[2] > b[2] end)
  local out = { kg .. '@' .. t }
  for i = 1, math.min(#list, 3) do out[#out + 1] = list[i][1] .. '@' .. list[i][2] end
  c.declined = table.concat(out, ',')
  redis.call('HSET', ckey(cg), 'declined', c.declined)
end

local function offer(cg, c, kg, t)
  local k = get(kkey(kg))
  local before = (c.prev or '') ~= '' and c.prev == k.sub
  local oid = redis.call('HINCRBY', STATS, 'offer_seq', 1)
  c.offered_to = kg
  redis.call('HSET', ckey(cg), 'offered_to', kg)
  redis.call('HSET', kkey(kg), 'offer_id', oid, 'offer_client', cg, 'deadline', t + C.ring_ms)
  redis.call('ZADD', DEADLINES, t + C.ring_ms, kg)
  set_state(kg, k, 'ringing', nil)
  emit(k.node, 'offer', k.conn, oid, c.node, c.conn,
       math.floor((t - tonumber(c.since)) / 1000), c.topic, c.mode, c.crisis or '0',
       before and '1' or '0')
end

local function has_skill(k, topic)
  for s in string.gmatch(k.skills or '', '[^,]+') do
    if s == topic then return true end
  end
  return false
end

local function wants_previous(c, t)
  return c.ask == '1' and (c.prev or '') ~= '' and
         t < tonumber(c.since) + C.previous_wait_ms
end

-- The counselor a client asked for, if still signed in: gid, hash.
local function previous_of(c)
  local kg = redis.call('GET', subkey(c.prev))
  local k = kg and get(kkey(kg))
  return kg, k
end

-- What c would be held for if a counselor who is not their preference
-- were free now, and until when (matcher.c's held_for).
local function held_for(c, t)
  if c.offered_to ~= '' then return nil end
  -- Someone in crisis waits for nobody: their counselor if free now,
  -- else the first free one.
  local crisis = c.crisis == '1'
  if wants_previous(c, t) then
    local _, k = previous_of(c)
    if k and (crisis and k.state == 'available' or not crisis and k.state ~= 'away') then
      return 'previous', tonumber(c.since) + C.previous_wait_ms
    end
  end
  if not crisis and t < tonumber(c.since) + C.topic_wait_ms then
    for _, kg in ipairs(redis.call('SMEMBERS', skillkey(c.topic))) do
      if not declined_recently(c, kg, t) then
        return 'topic', tonumber(c.since) + C.topic_wait_ms
      end
    end
  end
  return nil
end

-- The counselor c is offered now, or nil (matcher.h's rules). `kept`: sub
-- -> the client gid a counselor is kept for; `ks` caches hashes.
local function pick(cg, c, strict, t, kept, ks)
  local held = held_for(c, t)
  if held == 'previous' then
    local kg, k = previous_of(c)
    if k.state == 'available' then return kg end
    return nil
  end
  local best, skilled
  for _, kg in ipairs(redis.call('ZRANGE', AVAIL, 0, -1)) do   -- idle longest first
    ks[kg] = ks[kg] or get(kkey(kg))
    local k = ks[kg]
    local mine = c.crisis == '1' or not kept[k.sub] or kept[k.sub] == cg
    local fresh = not declined_recently(c, kg, t)
    if mine and (fresh or strict == 0) then
      best = best or kg
      if fresh and not skilled and has_skill(k, c.topic) then skilled = kg end
    end
  end
  if skilled then return skilled end
  if held == 'topic' then return nil end
  return best
end

-- Waiting clients, in queue order, with free counselors (pick()). The
-- first pass spares a counselor the person they just turned down; the
-- second offers whoever is left to whoever is free, so a decline can delay
-- a client but never strand them.
local function match(t)
  if redis.call('ZCARD', AVAIL) == 0 then return end
  local clients, kept = {}, {}
  for _, cg in ipairs(redis.call('ZRANGE', QUEUE, 0, -1)) do
    local c = get(ckey(cg))
    if c and c.away ~= '1' then   -- a client who lost their connection keeps the place only
      clients[#clients + 1] = { cg, c }
      if c.offered_to == '' and wants_previous(c, t) and not kept[c.prev] then
        kept[c.prev] = cg
      end
    end
  end
  for strict = 1, 0, -1 do
    for _, e in ipairs(clients) do
      if redis.call('ZCARD', AVAIL) == 0 then return end
      local cg, c = e[1], e[2]
      if c.offered_to == '' then
        local kg = pick(cg, c, strict, t, kept, {})
        if kg then offer(cg, c, kg, t) end
      end
    end
  end
end

-- The offer out to counselor kg ends without a session: the client waits
-- on at their place, remembering who passed.
local function offer_back(kg, k, t)
  local cg = k.offer_client
  local c = cg ~= '' and get(ckey(cg))
  if c then
    remember_decline(cg, c, kg, t)
    redis.call('HSET', ckey(cg), 'offered_to', '')
    -- The counselor they asked for passed: they wait for them no longer.
    if c.prev == k.sub then redis.call('HSET', ckey(cg), 'ask', '0') end
  end
  redis.call('HSET', kkey(kg), 'offer_id', 0, 'offer_client', '')
  redis.call('ZREM', DEADLINES, kg)
end

-- The offer ringing at counselor kg is withdrawn from them for `reason`.
local function withdraw_offer(kg, k, t, reason)
  local oid = k.offer_id
  offer_back(kg, k, t)
  emit(k.node, 'gone', k.conn, oid, reason)
end

local function client_forget(cg, node)
  redis.call('DEL', ckey(cg))
  redis.call('ZREM', LAPSES, cg .. '|p', cg .. '|t')
  redis.call('SREM', nckey(node), cg)
end

-- The client left (the queue, or their connection) while offered: the
-- offer is withdrawn; not the counselor's miss (they keep their idle position).
local function offer_left(c, t)
  local kg = c.offered_to
  local k = kg ~= '' and get(kkey(kg))
  if not k then return end
  emit(k.node, 'gone', k.conn, k.offer_id, 'client_left')
  redis.call('HSET', kkey(kg), 'offer_id', 0, 'offer_client', '')
  back_available(kg, k, t, nil)
end

-- Off the queue (cancel, disconnect, a node gone): 1 if it was queued.
local function client_remove(cg, t, abandoned)
  local c = get(ckey(cg))
  if not c then return 0 end
  local queued = redis.call('ZREM', QUEUE, cg) == 1
  client_forget(cg, c.node)
  if not queued then return 0 end
  bump()
  if abandoned then redis.call('HINCRBY', STATS, 'abandoned', 1) end
  offer_left(c, t)
  match(t)
  return 1
end

local function counselor_remove(kg, t)
  local k = get(kkey(kg))
  if not k then return end
  if k.state == 'ringing' then offer_back(kg, k, t) end
  if k.state ~= 'away' then skills_online(kg, k, false) end
  if redis.call('GET', subkey(k.sub)) == kg then redis.call('DEL', subkey(k.sub)) end
  redis.call('HINCRBY', COUNTS, k.state, -1)
  redis.call('ZREM', AVAIL, kg)
  redis.call('ZREM', DEADLINES, kg)
  redis.call('DEL', kkey(kg))
  redis.call('SREM', nkkey(k.node), kg)
  bump()
  match(t)
end

local function counselor_add(node, conn, st, sub, skills, t)
  local kg = node .. '/' .. conn
  local old = get(kkey(kg))
  if old then
    redis.call('HINCRBY', COUNTS, old.state, -1)
    if old.state ~= 'away' then skills_online(kg, old, false) end
  end
  local k = { skills = skills }
  redis.call('HSET', kkey(kg), 'node', node, 'conn', conn, 'state', st, 'idle_since', t,
             'deadline', 0, 'offer_id', 0, 'offer_client', '', 'missed', 0, 'busy_since', t,
             'sub', sub, 'skills', skills, 'shift_start', t, 'sessions', 0, 'break_until', 0,
             'break_ms', 0)
  redis.call('SET', subkey(sub), kg)
  redis.call('HINCRBY', COUNTS, st, 1)
  if st ~= 'away' then skills_online(kg, k, true) end
  if st == 'available' then redis.call('ZADD', AVAIL, t, kg) end
  redis.call('SADD', nkkey(node), kg)
  bump()
end

-- The queue's order is its score: arrival number, less CRISIS_AHEAD for
-- someone who may not be safe, so they wait ahead of everyone not in
-- crisis, first come first served among themselves. (Lua writes numbers
-- with 14 significant digits: scores stay well inside that.)
local CRISIS_AHEAD = 1e13

-- When a client's preferences lapse their estimate changes (es_tick).
local function lapses(cg, since, ask)
  if ask == '1' then redis.call('ZADD', LAPSES, since + C.previous_wait_ms, cg .. '|p') end
  redis.call('ZADD', LAPSES, since + C.topic_wait_ms, cg .. '|t')
end

-- Client cg waits at `place` (its score) since `since`, afresh.
local function put_client(cg, node, conn, topic, mode, crisis, since, who, ask, place)
  redis.call('DEL', ckey(cg))
  redis.call('HSET', ckey(cg), 'node', node, 'conn', conn, 'topic', topic, 'mode', mode,
             'crisis', crisis, 'since', since, 'offered_to', '', 'declined', '', 'who', who,
             'ask', ask, 'prev', who ~= '-' and redis.call('GET', prevkey(who)) or '')
  redis.call('SADD', nckey(node), cg)
  redis.call('ZADD', QUEUE, place, cg)
  lapses(cg, tonumber(since), ask)
  bump()
end

-- A person joins the queue; `who` is their pseudonym ('-' none), under which
-- whom they talked with last is kept; `ask` 1 asks for them again.
local function enqueue(node, conn, topic, mode, crisis, who, ask, t)
  local cg = node .. '/' .. conn
  if redis.call('ZSCORE', QUEUE, cg) then return 'wrong_state' end
  if redis.call('ZCARD', QUEUE) >= C.max_queue then return 'server_busy' end
  local seq = redis.call('HINCRBY', STATS, 'qseq', 1)
  if crisis == '1' then seq = seq - CRISIS_AHEAD end
  put_client(cg, node, conn, topic, mode, crisis, t, who, ask, seq)
  return 'ok'
end

-- Work done (wrap-up over, or none): available, idle from now.
local function back_to_work(kg, k, t)
  k.idle_since = t
  redis.call('HSET', kkey(kg), 'idle_since', t)
  back_available(kg, k, t, 'wrapup_done')
end

local function ring_timeout(kg, k, t)
  withdraw_offer(kg, k, t, 'timeout')
  local missed = tonumber(k.missed) + 1
  if missed >= C.max_missed then
    redis.call('HSET', kkey(kg), 'missed', 0)
    set_state(kg, k, 'away', 'missed_offers')
  else
    redis.call('HSET', kkey(kg), 'missed', missed)
    back_available(kg, k, t, nil)
  end
end

-- A node whose registration expired is gone: so are its counselors and
-- the clients it had waiting (they lost their connection with it).
local function sweep_nodes(t)
  for _, n in ipairs(redis.call('SMEMBERS', NODES)) do
    if redis.call('EXISTS', nodekey(n)) == 0 then
      for _, kg in ipairs(redis.call('SMEMBERS', nkkey(n))) do counselor_remove(kg, t) end
      for _, cg in ipairs(redis.call('SMEMBERS', nckey(n))) do client_remove(cg, t, true) end
      redis.call('DEL', nkkey(n), nckey(n), evkey(n), figkey(n))
      redis.call('SREM', NODES, n)
    end
  end
end

-- qver, queue, oldest wait, counselors by state, served, abandoned,
-- ratings and their sum, then node id, address and figures for each live
-- node, sorted by id.
local function stats(t)
  local out = { redis.call('HGET', STATS, 'qver') or '0', redis.call('ZCARD', QUEUE) }
  local first = redis.call('ZRANGE', QUEUE, 0, 0)
  local since = first[1] and redis.call('HGET', ckey(first[1]), 'since')
  out[#out + 1] = since and math.floor((t - tonumber(since)) / 1000) or 0
  for _, st in ipairs(STATES) do
    out[#out + 1] = tonumber(redis.call('HGET', COUNTS, st) or '0')
  end
  out[#out + 1] = tonumber(redis.call('HGET', STATS, 'served') or '0')
  out[#out + 1] = tonumber(redis.call('HGET', STATS, 'abandoned') or '0')
  out[#out + 1] = tonumber(redis.call('HGET', STATS, 'rated') or '0')
  out[#out + 1] = tonumber(redis.call('HGET', STATS, 'rated_sum') or '0')
  local nodes = redis.call('SMEMBERS', NODES)
  table.sort(nodes)
  for _, n in ipairs(nodes) do
    local f = redis.call('GET', figkey(n))
    if f then
      out[#out + 1] = n
      out[#out + 1] = redis.call('GET', nodekey(n)) or '-'
      out[#out + 1] = f
    end
  end
  return out
end

local function rate_into(key, score)
  redis.call('HINCRBY', key, 'count', 1)
  redis.call('HINCRBY', key, 'sum', score)
  redis.call('HINCRBY', key, 'h' .. score, 1)
end

-- name, count, sum, h1..h5 of one counselor's or topic's hash, onto `out`.
local function rating_row(out, name, key)
  local v = redis.call('HMGET', key, 'count', 'sum', 'h1', 'h2', 'h3', 'h4', 'h5')
  out[#out + 1] = name
  for i = 1, 7 do out[#out + 1] = tonumber(v[i]) or 0 end
end

local function handle_ms()
  return tonumber(redis.call('HGET', STATS, 'handle_ms') or C.handle_ms)
end

local function with_rules(fn)
  return function(keys, args)
    rules(args)
    local own = {}
    for i = NARGS + 1, #args do own[#own + 1] = args[i] end
    return fn(own, now())
  end
end

local function check_offer(k, oid)
  if not k or k.state ~= 'ringing' then return 'wrong_state' end
  if tonumber(k.offer_id) ~= tonumber(oid) then return 'no_such_offer' end
  return nil
end

-- ---- the functions nodes call ----

-- node conn topic mode crisis(0|1) who ask(0|1) -> ok | wrong_state | server_busy
redis.register_function('es_enqueue', with_rules(function(a, t)
  local r = enqueue(a[1], a[2], a[3], a[4], a[5], a[6], a[7], t)
  if r == 'ok' then match(t) end
  return r
end))

-- client gid -> 1 left the queue, 0 was not in it
redis.register_function('es_cancel', with_rules(function(a, t)
  return client_remove(a[1], t, true)
end))

-- client gid, 1 lost their connection (keeps the place, offered to nobody) | 0 back
redis.register_function('es_c_away', with_rules(function(a, t)
  local cg = a[1]
  local c = get(ckey(cg))
  if not c or not redis.call('ZSCORE', QUEUE, cg) or (c.away or '0') == a[2] then
    return 'ok'
  end
  redis.call('HSET', ckey(cg), 'away', a[2])
  if a[2] == '1' then
    offer_left(c, t)
    redis.call('HSET', ckey(cg), 'offered_to', '')
  end
  bump()
  match(t)
  return 'ok'
end))

-- counselor gid, sub, skills (comma-separated, '' none)
redis.register_function('es_k_add', with_rules(function(a, t)
  local node, conn = string.match(a[1], '^(.+)/(%d+)$')
  counselor_add(node, conn, 'away', a[2], a[3] or '', t)
  return 'ok'
end))

-- counselor gid
redis.register_function('es_k_gone', with_rules(function(a, t)
  counselor_remove(a[1], t)
  return 'ok'
end))

-- counselor gid, available | away -> ok | wrong_state | shift_over
redis.register_function('es_k_set', with_rules(function(a, t)
  local kg = a[1]
  local k = get(kkey(kg))
  if not k then return 'wrong_state' end
  local on_break = tonumber(k.break_until or 0) > 0
  if a[2] == 'available' then
    if k.state ~= 'away' and k.state ~= 'wrapup' then return 'wrong_state' end
    if shift_over(k, t) then return 'shift_over' end
    k.idle_since = t
    redis.call('HSET', kkey(kg), 'missed', 0, 'idle_since', t, 'break_until', 0)
    set_state(kg, k, 'available', 'by_you')
  else
    if k.state == 'ringing' then
      withdraw_offer(kg, k, t, 'by_you')
    elseif k.state ~= 'available' and k.state ~= 'wrapup' and
           not (k.state == 'away' and on_break) then
      return 'wrong_state'
    end
    redis.call('HSET', kkey(kg), 'break_until', 0)
    set_state(kg, k, 'away', 'by_you')
  end
  match(t)
  return 'ok'
end))

-- counselor gid, break ms -> ok | wrong_state (matcher.h's take_break)
redis.register_function('es_k_break', with_rules(function(a, t)
  local kg, ms = a[1], tonumber(a[2])
  local k = get(kkey(kg))
  if not k or not ms or ms <= 0 then return 'wrong_state' end
  if k.state == 'busy' then
    redis.call('HSET', kkey(kg), 'break_ms', ms)
    emit(k.node, 'state', k.conn, 'busy', 'break_next', ms)
    return 'ok'
  end
  if k.state == 'ringing' then withdraw_offer(kg, k, t, 'by_you') end
  start_break(kg, k, ms, t)
  match(t)
  return 'ok'
end))

-- counselor gid, offer id, 1 accept | 0 decline -> ok | wrong_state | no_such_offer
redis.register_function('es_k_answer', with_rules(function(a, t)
  local kg = a[1]
  local k = get(kkey(kg))
  local bad = check_offer(k, a[2])
  if bad then return bad end
  if a[3] == '1' then
    local cg = k.offer_client
    local c = get(ckey(cg))
    if not c then return 'no_such_offer' end
    local place = redis.call('ZSCORE', QUEUE, cg)
    redis.call('ZREM', QUEUE, cg)
    client_forget(cg, c.node)
    bump()
    redis.call('HSET', kkey(kg), 'offer_id', 0, 'offer_client', '', 'missed', 0, 'busy_since', t)
    redis.call('HINCRBY', kkey(kg), 'sessions', 1)
    redis.call('HINCRBY', STATS, 'served', 1)
    set_state(kg, k, 'busy', nil)
    if c.who ~= '-' and C.memory_ms > 0 then
      redis.call('SET', prevkey(c.who), k.sub, 'PX', C.memory_ms)
    end
    -- Where the client was (since, place, who, ask), should the counselor
    -- turn out to be gone by the time their node reads this: es_requeue.
    emit(k.node, 'matched', k.conn, c.node, c.conn, c.topic, c.mode,
         redis.call('GET', nodekey(c.node)) or '-', c.since, place, c.who, c.ask)
  else
    -- A decline is a choice made at the desk: not a miss, and the
    -- counselor keeps their place among the idle.
    offer_back(kg, k, t)
    redis.call('HSET', kkey(kg), 'missed', 0)
    back_available(kg, k, t, nil)
    match(t)
  end
  return 'ok'
end))

-- A match whose counselor was gone before their node could start the
-- session: the client goes back to the place they had (node conn topic
-- mode since place who ask), and the accept is not counted served. With
-- `present` 0 the client is known gone too: counted abandoned instead.
redis.register_function('es_requeue', with_rules(function(a, t)
  local node, conn, present = a[1], a[2], a[9] == '1'
  local cg = node .. '/' .. conn
  redis.call('HINCRBY', STATS, 'served', -1)
  if not present then
    redis.call('HINCRBY', STATS, 'abandoned', 1)
    bump()
    return 'ok'
  end
  if redis.call('ZSCORE', QUEUE, cg) then return 'ok' end
  put_client(cg, node, conn, a[3], a[4], tonumber(a[6]) < 0 and '1' or '0', a[5], a[7], a[8],
             a[6])
  match(t)
  return 'ok'
end))

-- counselor gid, crisis (0|1): their session closed
redis.register_function('es_k_over', with_rules(function(a, t)
  local kg = a[1]
  local k = get(kkey(kg))
  if not k or k.state ~= 'busy' then return 'ok' end
  local wrapup = a[2] == '1' and C.crisis_wrapup_ms or C.wrapup_ms
  local h = handle_ms()
  local d = t - tonumber(k.busy_since) + wrapup - h
  h = math.max(1, h + (d >= 0 and math.floor(d / 5) or -math.floor(-d / 5)))
  redis.call('HSET', STATS, 'handle_ms', h)
  local break_ms = tonumber(k.break_ms or 0)
  if break_ms > 0 then
    start_break(kg, k, math.max(break_ms, wrapup), t)
    match(t)
  elseif wrapup > 0 then
    redis.call('HSET', kkey(kg), 'deadline', t + wrapup)
    redis.call('ZADD', DEADLINES, t + wrapup, kg)
    set_state(kg, k, 'wrapup', nil)
  else
    back_to_work(kg, k, t)
    match(t)
  end
  return 'ok'
end))

-- node ttl_ms url figures: register or keep alive (the key holds where
-- other nodes reach it, figkey its own figures); then deadlines, dead nodes
-- and matching. -> stats (see stats())
redis.register_function('es_tick', with_rules(function(a, t)
  redis.call('SET', nodekey(a[1]), a[3], 'PX', a[2])
  if a[4] ~= '-' then redis.call('SET', figkey(a[1]), a[4], 'PX', a[2]) end
  redis.call('SADD', NODES, a[1])
  for _, kg in ipairs(redis.call('ZRANGEBYSCORE', DEADLINES, '-inf', t)) do
    local k = get(kkey(kg))
    if not k then
      redis.call('ZREM', DEADLINES, kg)
    elseif k.state == 'ringing' then
      ring_timeout(kg, k, t)
    elseif k.state == 'wrapup' then
      back_to_work(kg, k, t)
    elseif k.state == 'away' and tonumber(k.break_until or 0) > 0 then
      k.idle_since = t
      redis.call('HSET', kkey(kg), 'idle_since', t)
      back_available(kg, k, t, 'break_over')
    else
      redis.call('ZREM', DEADLINES, kg)
    end
  end
  -- The hours of a shift run out for counselors who are free.
  if C.shift_ms > 0 then
    for _, kg in ipairs(redis.call('ZRANGE', AVAIL, 0, -1)) do
      local k = get(kkey(kg))
      if shift_over(k, t) then set_state(kg, k, 'away', 'shift_over') end
    end
  end
  sweep_nodes(t)
  if redis.call('ZREMRANGEBYSCORE', LAPSES, '-inf', t) > 0 then bump() end
  match(t)
  return stats(t)
end))

-- client gids -> online, free, handle_ms, then for each one: position (0:
-- not in the queue), what they are held for ('' nothing) and for how many
-- ms more
redis.register_function('es_positions', with_rules(function(a, t)
  local n = {}
  for _, st in ipairs(STATES) do n[st] = tonumber(redis.call('HGET', COUNTS, st) or '0') end
  local out = { n.available + n.ringing + n.busy + n.wrapup, n.available + n.ringing, handle_ms() }
  for _, cg in ipairs(a) do
    local r = redis.call('ZRANK', QUEUE, cg)
    local c = r and get(ckey(cg))
    local held, untl
    if c then held, untl = held_for(c, t) end
    out[#out + 1] = r and r + 1 or 0
    out[#out + 1] = held or ''
    out[#out + 1] = held and untl - t or 0
  end
  return out
end))

-- counselor sub, topic ('' unknown), score 1-5, comment ('' none), topics
-- kept at most, comments kept per counselor -> ok | wrong_state. A topic
-- beyond the bound counts for the counselor and the service only.
redis.register_function('es_rate', with_rules(function(a, t)
  local sub, topic, score = a[1], a[2], tonumber(a[3])
  if sub == '' or not score or score < 1 or score > 5 then return 'wrong_state' end
  score = math.floor(score)
  rate_into(rkkey(sub), score)
  redis.call('ZADD', RATED, 0, sub)
  if topic ~= '' and (redis.call('ZSCORE', RTOPICS, topic) or
                      redis.call('ZCARD', RTOPICS) < tonumber(a[5])) then
    rate_into(rtkey(topic), score)
    redis.call('ZADD', RTOPICS, 0, topic)
  end
  if a[4] ~= '' then
    redis.call('LPUSH', rckey(sub), a[4])
    redis.call('LTRIM', rckey(sub), 0, tonumber(a[6]) - 1)
  end
  redis.call('HINCRBY', STATS, 'rated', 1)
  redis.call('HINCRBY', STATS, 'rated_sum', score)
  return 'ok'
end))

-- counselor sub ('' all), counselors listed at most, topics listed at most
-- -> { counselors, topics, comments }: each list entry 8 values (name,
-- count, sum, h1..h5); one counselor: their entry (zeros if never rated)
-- and their comments, newest first, no topics; all: the first counselors
-- and topics in byte order, no comments.
redis.register_function('es_ratings', with_rules(function(a, t)
  local ks, ts, comments = {}, {}, {}
  if a[1] ~= '' then
    rating_row(ks, a[1], rkkey(a[1]))
    comments = redis.call('LRANGE', rckey(a[1]), 0, -1)
  else
    for _, sub in ipairs(redis.call('ZRANGE', RATED, 0, tonumber(a[2]) - 1)) do
      rating_row(ks, sub, rkkey(sub))
    end
    for _, topic in ipairs(redis.call('ZRANGE', RTOPICS, 0, tonumber(a[3]) - 1)) do
      rating_row(ts, topic, rtkey(topic))
    end
  end
  return { ks, ts, comments }
end))

-- After Redis was away: make the node's entries match what it holds.
-- node, nclients, then conn topic mode crisis who ask per waiting client
-- (oldest first), then conn state sub skills per counselor.
redis.register_function('es_resync', with_rules(function(a, t)
  local node, nc = a[1], tonumber(a[2])
  local keep = {}
  for i = 0, nc - 1 do
    local f = 3 + 6 * i
    local cg = node .. '/' .. a[f]
    keep[cg] = true
    if not redis.call('ZSCORE', QUEUE, cg) then
      enqueue(node, a[f], a[f + 1], a[f + 2], a[f + 3], a[f + 4], a[f + 5], t)
    end
  end
  for _, cg in ipairs(redis.call('SMEMBERS', nckey(node))) do
    if not keep[cg] then client_remove(cg, t, true) end
  end
  keep = {}
  for i = 3 + 6 * nc, #a - 3, 4 do
    local kg = node .. '/' .. a[i]
    keep[kg] = true
    if redis.call('EXISTS', kkey(kg)) == 0 then
      -- Lost with Redis' data: back as they were, but an offer is gone.
      local st = a[i + 1]
      if st == 'ringing' or st == 'wrapup' then st = 'available' end
      counselor_add(node, a[i], st, a[i + 2], a[i + 3], t)
      emit(node, 'state', a[i], st, '-', 0)
    end
  end
  for _, kg in ipairs(redis.call('SMEMBERS', nkkey(node))) do
    if not keep[kg] then counselor_remove(kg, t) end
  end
  match(t)
  return 'ok'
end))
