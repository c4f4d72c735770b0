"""The venue-neutral asyncio layer: connections (:mod:`.connection`), supervision, rollover,
REST-fallback polling and kline integrity (:mod:`.feed`), and the paced REST path (:mod:`.rest`)."""
