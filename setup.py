"""Builds jaxsched's optional CPU kernels (``csrc/fused_cpu.cc``, XLA typed FFI).

Everything else lives in ``pyproject.toml``.  The kernels need a C++20 compiler and the FFI
headers shipped with jaxlib (a build requirement); when either is missing the build goes on
without them and the optimizers run on XLA alone (same numbers, slower on CPU).
"""

import platform

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _host_vector_flags() -> list[str]:
    """``-mavx2`` when the building x86-64 CPU has AVX2 (the package is built where it runs):
    Adam's divisions and square root then run 8 lanes wide.  FMA stays off (-ffp-contract=off),
    so the numbers do not depend on the flag."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:
        return []
    return ["-mavx2"] if platform.machine() in ("x86_64", "AMD64") and "avx2" in flags else []


class OptionalBuildExt(build_ext):
    def build_extension(self, ext: Extension) -> None:
        try:
            import jax.ffi

            ext.include_dirs.append(jax.ffi.include_dir())
            super().build_extension(ext)
        except Exception as err:  # no compiler, no headers: the XLA path still works
            print(f"warning: jaxsched's fused CPU kernels were not built: {err}")


setup(
    ext_modules=[
        Extension(
            "jaxsched.optim._fused_cpu",
            ["csrc/fused_cpu.cc"],
            language="c++",
            # no FMA contraction: torch rounds every operation too.
            extra_compile_args=[
                "-std=c++20",
                "-O3",
                "-fno-math-errno",
                "-ffp-contract=off",
                *_host_vector_flags(),
            ],
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
