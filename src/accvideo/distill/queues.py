"""The fake-sample queues Q_0 .. Q_{m-1} (docs/method.md 3); Q_m is fresh noise, drawn by the trainer."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import torch

# A queue entry: one batch of fakes at key step k, with what pairs them with real trajectories.
# {"x": (B, C, F', H', W') detached latents at t'_k, "cond": {name: (B, ...)}, "index": (B,) dataset items
#  whose prompts condition them, "seed": (B,) seeds of their starting noise}
Entry = dict


class KeyQueues:
    """Q_k holds batches that took m-k student Euler steps from noise; FIFO, at most `capacity` batches each.

    Within an outer iteration every batch is popped right after it is pushed, except from Q_0 (the finished
    fakes), so `capacity` 1 loses nothing; Q_0 keeps the newest batch (previews, debugging).
    """

    def __init__(self, num_key_steps: int, capacity: int = 1):
        self.m = num_key_steps
        self.queues: list[deque] = [deque(maxlen=capacity) for _ in range(num_key_steps)]

    def push(self, k: int, entry: Entry) -> None:
        """Append a batch of fakes at t'_k (detached) to Q_k."""
        self.queues[k].append(entry)

    def pop(self, k: int) -> Entry:
        """The oldest batch of Q_k (k < m; the trainer draws Q_m from fresh noise)."""
        if not self.queues[k]:
            raise RuntimeError(f"queue Q_{k} is empty: pop Q_{k + 1} and push to Q_{k} first")
        return self.queues[k].popleft()

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues)

    def state_dict(self, gather: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict:
        """Every queued batch, on the CPU, for the training checkpoint.

        Under torchrun each rank queues its slice of every batch; `gather` (a collective that concatenates the
        ranks' tensors in rank order) makes the saved batches global, so a run resumes on any process count.
        """
        return {"queues": [[_map(e, lambda t: (gather(t) if gather else t).cpu()) for e in q] for q in self.queues]}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu", part: slice | None = None) -> None:
        """Restore saved (global) batches; `part` keeps this rank's contiguous slice of every batch."""
        if len(state["queues"]) != self.m:
            raise ValueError(f"checkpoint holds {len(state['queues'])} queues, this run has {self.m} key steps")
        for q, saved in zip(self.queues, state["queues"], strict=True):
            q.clear()
            q.extend(_map(e, lambda t: (t if part is None else t[part]).to(device)) for e in saved)


def _map(entry: Entry, fn: Callable[[torch.Tensor], torch.Tensor]) -> Entry:
    """`fn` applied to every tensor of an entry (the conditioning dict included), in a fixed order."""
    return {k: ({n: fn(t) for n, t in v.items()} if isinstance(v, dict) else fn(v)) for k, v in entry.items()}
