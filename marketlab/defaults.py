"""Names shared by the CLI, the collector and the config file, kept light to import."""

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT")
DEFAULT_INTERVALS = ("1m", "5m", "15m", "1h")
CHANNELS = ("trades", "ticker", "book", "klines", "bookTicker", "aggTrades", "miniTicker")
DEFAULT_CHANNELS = ("trades", "ticker", "book", "klines")
