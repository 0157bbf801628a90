"""The training log off a terminal: no progress bar, so step and validation lines show the time."""

from __future__ import annotations

import io

from seq2seq.training.monitor import Monitor


def test_off_a_terminal_step_lines_carry_the_elapsed_time(tmp_path):
    out = io.StringIO()
    monitor = Monitor(tmp_path, 0, 10, tensorboard=False, stream=out)
    monitor.log("step 10: loss 2.0")
    monitor.log("training: 5 parameters")
    monitor.close()
    first, second = out.getvalue().splitlines()
    assert first.startswith("step 10: loss 2.0  wall 0:00:0") and second == "training: 5 parameters"
