"""The recording file: what a collector received (raw frames and REST answers), in order, as
one zstd stream; its writer and its readers (entry by entry, or in blocks read ahead).
Feeding a recording back through the collector is :mod:`marketlab.stream.replay`."""
