"""The compiled part of the hot path (``marketlab._native``); optional: where it cannot be
built, marketlab runs on the pure-Python twins of its functions."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "marketlab._native",
            [
                "csrc/native.c",
                "csrc/binance.c",
                "csrc/bybit.c",
                "csrc/blocks.c",
                "csrc/coinbase.c",
                "csrc/inflow.c",
                "csrc/rings.c",
                "csrc/okx.c",
            ],
            depends=["csrc/native.h", "csrc/json_cursor.h", "csrc/records.h"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
