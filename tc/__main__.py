"""``python -m tc``: the same command line as the ``tc`` script.

``tc`` is also iproute2's traffic-control program (``/usr/sbin/tc``); when that one comes first on
PATH, ``python -m tc ...`` (with the interpreter tc is installed in) always reaches this one.
"""

from tc.cli import main

if __name__ == "__main__":
    main()
