"""Device time of in-order steps, from when each was handed to the executor and when its
output was ready.

A GPU runs the steps it is given one after the other, like one CUDA stream. A step starts on the
device when it is submitted or when the step before it finishes, whichever is later, so its
device time is ``done - max(submitted, previous done)``. With async scheduling the engine hands
over step k+1 while step k runs, and this is the gap between two completions; when the device
was idle it is the time from submission to completion. Both are wall-clock times seen by the
engine process, so the output transfer of each step is counted (once per step, as it is in the
engine's own cycle).
"""

from __future__ import annotations


class StepClock:
    def __init__(self) -> None:
        self._last_done = 0.0

    def device_s(self, submitted: float, done: float) -> float:
        """Device time of a step completed at ``done``; steps must be given in completion
        order."""
        start = submitted if submitted > self._last_done else self._last_done
        if done > self._last_done:
            self._last_done = done
        return max(0.0, done - start)
