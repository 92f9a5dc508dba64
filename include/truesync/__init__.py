"""truesync: keep every change in sync between business systems, and say what is wrong.

Canonical text lives in Python ``str`` objects. pandas 3 stores text in Arrow instead
whenever pyarrow happens to be installed (another package may bring it), and Great
Expectations then judges some odd text differently (a value holding NUL or a lone
surrogate passes a regex it fails in Python storage). So the storage is set here, once,
for every process that imports the engine: its verdicts never depend on an optional package.
"""

import pandas as pd

pd.set_option("mode.string_storage", "python")
