"""The Lab: one venue's live data in rolling DataFrames, its history, its bus and its status.

Everything in this package is only the Lab's; other components reach the Lab through
:class:`Lab` alone."""

from marketlab.lab.facade import Lab

__all__ = ["Lab"]
