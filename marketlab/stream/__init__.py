"""The venue-neutral asyncio layer: one WebSocket (:mod:`.connection`), a feed's supervision,
rollover and books (:mod:`.feed`), what it takes in (:mod:`.intake`), kline and trade integrity
(:mod:`.klines`, :mod:`.trades`), the REST fallback (:mod:`.polling`), the paced REST path
(:mod:`.rest`), its settings (:mod:`.config`), what readers see (:mod:`.state`), a recording fed
through a feed in place of sockets (:mod:`.replay`) and sync code waiting on a coroutine
(:mod:`.blocking`)."""
