"""A simulated exchange speaking Binance's public wire protocol on loopback."""

from marketlab.sim.exchange import SimClock, SimExchange, parse_fault_schedule
from marketlab.sim.market import Market, SymbolSpec, spec_for

__all__ = ["Market", "SimClock", "SimExchange", "SymbolSpec", "parse_fault_schedule", "spec_for"]
