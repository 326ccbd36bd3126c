"""torch is the reference, never a runtime dependency: only jaxsched.interop touches it, and
only when it converts."""

from __future__ import annotations

import subprocess
import sys


def test_the_library_never_imports_torch():
    code = (
        "import sys, jaxsched, jaxsched.optim, jaxsched.amp, jaxsched.schedules, "
        "jaxsched.transforms, jaxsched.optim.swa_utils, jaxsched.interop\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'flax' not in sys.modules, 'flax was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
