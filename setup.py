"""The compiled part of the hot path (``marketlab._native``); optional: where it cannot be
built, marketlab runs on the pure-Python twins of its functions."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "marketlab._native",
            [
                "marketlab/_native.c",
                "marketlab/_native_binance.c",
                "marketlab/_native_blocks.c",
                "marketlab/_native_quick.c",
                "marketlab/_native_inflow.c",
            ],
            depends=["marketlab/_native.h", "marketlab/_native_json.h"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
