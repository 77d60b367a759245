"""The sliding windows in Redis: one script admits a call on every limit that applies,
all or none, atomically for every worker of every machine; another ends it (tokens
corrected to actual usage, its in-flight slot freed). Time is Redis's own (`TIME`), so
machines with drifting clocks still share one window.

Keys per window `K`: `K:log` (sorted set: call id by admission time, or by expiry for
calls in flight), `K:cost` (hash: call id -> its tokens or 1), `K:sum` (their total).
All keys of a call's limits are touched by one script: a single Redis (or one hash slot),
not a cluster spread over slots.
"""

import uuid
from collections.abc import Sequence

import redis.asyncio as aioredis

from aura_orchestrator.ratelimit.window import WINDOW_SECONDS, Check, Decision, Kind, Standing

# ARGV: window ms, call id, in-flight expiry ms, then (kind, limit, cost) per check.
# KEYS: (log, cost, sum) per check. Returns {refused index or 0, retry-after ms or -1
# (never fits), then (remaining, reset ms) per check}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1]); local id = ARGV[2]; local ttl = tonumber(ARGV[3])
local n = (#ARGV - 3) / 3
local used = {}
local refused, retry = 0, 0

local function forget_old(log, costs, sum)
  while true do
    local old = redis.call('ZRANGEBYSCORE', log, '-inf', now - window, 'LIMIT', 0, 500)
    if #old == 0 then return end
    local freed = 0
    for _, c in ipairs(redis.call('HMGET', costs, unpack(old))) do
      freed = freed + (tonumber(c) or 0)
    end
    redis.call('HDEL', costs, unpack(old))
    redis.call('ZREM', log, unpack(old))
    if freed > 0 then redis.call('DECRBY', sum, freed) end
  end
end

local function room_at(log, costs, need)
  -- when the oldest entries that free `need` have left the window
  local start, freed = 0, 0
  while true do
    local entries = redis.call('ZRANGE', log, start, start + 199, 'WITHSCORES')
    if #entries == 0 then return 0 end
    for j = 1, #entries, 2 do
      freed = freed + (tonumber(redis.call('HGET', costs, entries[j])) or 0)
      if freed >= need then return tonumber(entries[j + 1]) + window - now end
    end
    start = start + 200
  end
end

for i = 1, n do
  local kind, limit, cost = ARGV[3 * i + 1], tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3])
  local log, costs, sum = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  if kind == 'in_flight' then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now)
    used[i] = redis.call('ZCARD', log)
  else
    forget_old(log, costs, sum)
    used[i] = tonumber(redis.call('GET', sum) or '0')
  end
  if refused == 0 and used[i] + cost > limit then
    refused = i
    if cost > limit then retry = -1
    elseif kind == 'in_flight' then retry = 1000
    else retry = room_at(log, costs, used[i] + cost - limit) end
  end
end

local out = {refused, retry}
for i = 1, n do
  local kind, limit, cost = ARGV[3 * i + 1], tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3])
  local log, costs, sum = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local taken = 0
  if refused == 0 then
    taken = cost
    if kind == 'in_flight' then
      redis.call('ZADD', log, now + ttl, id)
      redis.call('PEXPIRE', log, ttl + 1000)
    else
      redis.call('ZADD', log, now, id)
      redis.call('HSET', costs, id, cost)
      redis.call('INCRBY', sum, cost)
      for _, k in ipairs({log, costs, sum}) do redis.call('PEXPIRE', k, window + 1000) end
    end
  end
  local reset = 0
  if kind ~= 'in_flight' then
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    if #oldest > 0 then reset = tonumber(oldest[2]) + window - now end
  end
  table.insert(out, math.max(limit - used[i] - taken, 0))
  table.insert(out, reset)
end
return out
"""

# ARGV: call id, then (kind, actual tokens or -1) per check; KEYS as _ADMIT's.
_END = """
local id = ARGV[1]
local n = (#ARGV - 1) / 2
for i = 1, n do
  local kind, actual = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  local log, costs, sum = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  if kind == 'in_flight' then
    redis.call('ZREM', log, id)
  elseif actual >= 0 then
    local held = tonumber(redis.call('HGET', costs, id))
    if held then  -- still in the window: it counts what was used
      redis.call('HSET', costs, id, actual)
      redis.call('DECRBY', sum, held - actual)
    end
  end
end
return 1
"""

PREFIX = "aura:rl:"


def _keys(checks: Sequence[Check]) -> list[str]:
    return [f"{PREFIX}{c.key}:{part}" for c in checks for part in ("log", "cost", "sum")]


class RedisWindows:
    """The windows of every worker, in the Redis at `client`."""

    def __init__(self, client: aioredis.Redis, *, window_seconds: float = WINDOW_SECONDS) -> None:
        self._client = client
        self._window_ms = int(window_seconds * 1000)
        self._admit = client.register_script(_ADMIT)
        self._end = client.register_script(_END)

    async def admit(
        self, checks: Sequence[Check], *, call_id: uuid.UUID, in_flight_seconds: float
    ) -> Decision:
        """The call admitted on every check, or on none (the first that refuses says
        when it will have room). Its slot in flight expires after `in_flight_seconds`
        (its deadline and margin) should nobody end it: a killed worker's call."""
        ttl_ms = max(1, int(in_flight_seconds * 1000))
        args: list[str | int] = [self._window_ms, str(call_id), ttl_ms]
        for c in checks:
            args += [c.kind.value, c.limit, c.cost]
        raw = await self._admit(keys=_keys(checks), args=args)
        refused, retry_ms = int(raw[0]), int(raw[1])
        standings = tuple(
            Standing(
                check=c, remaining=int(raw[2 + 2 * i]), reset_seconds=int(raw[3 + 2 * i]) / 1000
            )
            for i, c in enumerate(checks)
        )
        if refused == 0:
            return Decision(admitted=True, standings=standings)
        return Decision(
            admitted=False,
            standings=standings,
            refused_by=checks[refused - 1],
            # Never fits (a worst case above the limit): a minute is the honest answer.
            retry_after_seconds=self._window_ms / 1000 if retry_ms < 0 else retry_ms / 1000,
        )

    async def end(
        self, checks: Sequence[Check], *, call_id: uuid.UUID, tokens_used: int | None
    ) -> None:
        """The call ended: its slot in flight freed, its tokens corrected to `tokens_used`
        (None: left at the worst case, e.g. usage unknown)."""
        args: list[str | int] = [str(call_id)]
        for c in checks:
            actual = tokens_used if c.kind is Kind.TOKENS and tokens_used is not None else -1
            args += [c.kind.value, actual]
        await self._end(keys=_keys(checks), args=args)
