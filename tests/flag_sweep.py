"""Parses bad values of every float flag of ONE command in this process and prints a JSON
list of ``[flag, value, exit status, error line]``.

    python tests/flag_sweep.py run.lasso

Used by ``tests/test_value_faults.py``: the flags are the command's registered absl float
flags (``run.shared_flags.float_flags``), so a float flag added later is swept too.
"""
import contextlib
import io
import json
import sys

from absl import flags

BAD = ["inf", "-inf", "nan", "1e39", "-1e39", "1e-50"]
REQUIRED = {"run.make_data": ["--setting=noiseless", "--out=unused"]}


def main(module):
    __import__(module)
    from run import shared_flags, startup  # pylint: disable=import-outside-toplevel
    base = ["prog"] + REQUIRED.get(module, [])
    out = []
    for name in shared_flags.float_flags():
        for value in BAD:
            flags.FLAGS.unparse_flags()
            err = io.StringIO()
            status = 0
            with contextlib.redirect_stderr(err):
                try:
                    startup._parse(base + [f"--{name}={value}"])  # pylint: disable=protected-access
                except SystemExit as exit_:
                    status = exit_.code
            out.append([name, value, status, err.getvalue().strip()])
    flags.FLAGS.unparse_flags()
    startup._parse(base)   # pylint: disable=protected-access  (the defaults parse)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
