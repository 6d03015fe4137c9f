"""Run flopcalc from a checkout without installing it: ``python cli.py alexnet --input 3x224x224``.

A thin shim over :func:`flopcalc.cli_start.main`; the installed command is ``flopcalc`` (this file is not part of the
package, so nothing named ``cli`` is installed).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flopcalc.cli_start import main  # noqa: E402  (after the checkout is on sys.path)

if __name__ == "__main__":
    main()
