"""Key-value buffers for a decoding batch that rows join and leave while it runs.

Continuous batching needs three things a transformers `DynamicCache` makes expensive: adding
rows (concatenating every layer's keys and values: 0.5 s for 16 rows of 800 tokens of SmolLM2
on the 2-core CPU, mostly first-touch of fresh memory), removing rows (a gather of all of
them), and appending a token (`torch.cat` copies the whole cache, 36 of a 135 ms step).

Here every layer keeps its keys and values in buffers of `slots` rows by `capacity` columns,
allocated once and reused. Live rows occupy slots 0..rows-1 and columns start..end-1; every row
ends at the same column (its newest token), and a row shorter than the batch has masked columns
before its first token. A step writes one column in place; a joining row is written into the
next free slot, right-aligned; a leaving row's slot is filled by the last live row (one row is
copied, not all of them). The attention mask and each row's next position live in the same
layout, so whatever moves a row moves its mask and position with it. Buffers are reallocated
only when rows or columns run out, and then with room to spare (doubling): allocating and
first touching memory is the expensive part. They are not zeroed; instead every column that
enters the live window of a row is written (a joining row's masked columns and the columns a
wider newcomer adds on the left get zeros), so masked attention never meets a NaN of stale
memory and stays exact.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

SPARE_COLUMNS = 256
"""Columns kept free on each side when buffers are (re)allocated: room for a longer prompt to
join on the left and for the next tokens on the right without reallocating."""


class SlotLayout:
    """Which part of the buffers is live, shared by every layer of one cache."""

    def __init__(self) -> None:
        self.rows = 0
        self.start = 0
        self.end = 0


class SlotLayer(DynamicLayer):
    """One decoder layer's keys and values in slot buffers (see the module docstring)."""

    def __init__(self, layout: SlotLayout, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.layout = layout
        self.buffer_keys = keys
        self.buffer_values = values
        self.device = keys.device
        self.is_initialized = True
        self.refresh()

    def refresh(self) -> None:
        """Point `keys` and `values` (what transformers reads) at the live part."""
        rows, start, end = self.layout.rows, self.layout.start, self.layout.end
        self.keys = self.buffer_keys[:rows, :, start:end]
        self.values = self.buffer_values[:rows, :, start:end]

    def get_seq_length(self) -> int:
        return self.layout.end - self.layout.start

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows, start, end = self.layout.rows, self.layout.start, self.layout.end
        new = key_states.shape[-2]
        self.buffer_keys[:rows, :, end : end + new] = key_states
        self.buffer_values[:rows, :, end : end + new] = value_states
        return (
            self.buffer_keys[:rows, :, start : end + new],
            self.buffer_values[:rows, :, start : end + new],
        )

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("rows leave a slot cache through SlotCache.keep_rows")


class SlotCache:
    """The slot buffers of all layers, with the rows' attention mask and next positions."""

    def __init__(
        self, template: list[tuple[torch.Tensor, torch.Tensor]], *, min_slots: int = 1
    ) -> None:
        """`template`: one (keys, values) pair per layer, giving heads, head size, dtype and
        device (their contents are not used); `min_slots`: rows to make room for at once."""
        self.min_slots = min_slots
        self.layout = SlotLayout()
        self._shapes = [(k.shape[1], k.shape[3], k.dtype, k.device) for k, _ in template]
        self.device = template[0][0].device
        self.slots = 0
        self.capacity = 0
        self.cache = DynamicCache()
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=self.device)
        self.next_positions = torch.zeros(0, dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ reading

    @property
    def rows(self) -> int:
        return self.layout.rows

    @property
    def width(self) -> int:
        return self.layout.end - self.layout.start

    def attention(self) -> torch.Tensor:
        """The live rows' mask over the live columns."""
        layout = self.layout
        return self.mask[: layout.rows, layout.start : layout.end]

    # ------------------------------------------------------------------ one decoding step

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask and positions for feeding one new token per row: the column it will be
        written to is opened first (reallocating when out of columns)."""
        self._ensure(self.rows, self.width, 1)
        layout = self.layout
        self.mask[: layout.rows, layout.end] = 1
        mask = self.mask[: layout.rows, layout.start : layout.end + 1]
        return mask, self.next_positions[: layout.rows, None]

    def advance(self) -> None:
        """After the forward pass: the written column becomes live."""
        self.layout.end += 1
        self.next_positions[: self.layout.rows] += 1
        self._refresh()

    # ------------------------------------------------------------------ rows join and leave

    def add_rows(self, layers: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor) -> None:
        """Rows read by a prefill pass join: per layer (keys, values) of shape
        (m, heads, w, dim) and their (m, w) mask, right-aligned to the batch's last column."""
        added, width = mask.shape
        first = self.rows
        self._ensure(first + added, max(self.width, width), 0)
        layout = self.layout
        if layout.end - layout.start < width:
            # A wider newcomer: the window grows left (_ensure made room); the live rows'
            # new columns are masked and must hold finite numbers.
            new_start = layout.end - width
            self._zero(slice(0, first), slice(new_start, layout.start))
            layout.start = new_start
        joining = slice(first, first + added)
        self._zero(joining, slice(layout.start, layout.end - width))
        for layer, (keys, values) in zip(self.cache.layers, layers, strict=True):
            assert isinstance(layer, SlotLayer)
            layer.buffer_keys[joining, :, layout.end - width : layout.end] = keys
            layer.buffer_values[joining, :, layout.end - width : layout.end] = values
        self.mask[joining] = 0
        self.mask[first : first + added, layout.end - width : layout.end] = mask
        self.next_positions[first : first + added] = mask.sum(dim=1)
        layout.rows = first + added
        self._refresh()

    def keep_rows(self, keep: list[bool]) -> list[int]:
        """Drop the rows not kept. Each freed slot below the new row count takes the last
        kept row above it, so only that row is copied. Returns, per new slot, the old slot of
        the row now in it, for the caller to reorder its own per-row state the same way."""
        rows = self.rows
        order = list(range(rows))
        kept = sum(keep)
        holes = [i for i in range(kept) if not keep[i]]
        movers = [j for j in range(kept, rows) if keep[j]]
        if holes:
            to = torch.tensor(holes, device=self.device)
            source = torch.tensor(movers, device=self.device)
            start, end = self.layout.start, self.layout.end
            for layer in self.cache.layers:
                assert isinstance(layer, SlotLayer)
                layer.buffer_keys[to, :, start:end] = layer.buffer_keys[source, :, start:end]
                layer.buffer_values[to, :, start:end] = layer.buffer_values[source, :, start:end]
            self.mask[to] = self.mask[source]
            self.next_positions[to] = self.next_positions[source]
            for hole, mover in zip(holes, movers, strict=True):
                order[hole] = mover
        self.layout.rows = kept
        self._drop_unread_columns()
        self._refresh()
        return order[:kept]

    # ------------------------------------------------------------------ room

    def _drop_unread_columns(self) -> None:
        """Columns no live row attends to leave the window (each step reads the window)."""
        layout = self.layout
        if layout.rows == 0:
            layout.start = layout.end
            return
        live = self.mask[: layout.rows, layout.start : layout.end].any(dim=0)
        used = torch.nonzero(live)
        if len(used):
            layout.start += int(used[0])

    def _ensure(self, rows: int, width: int, right: int) -> None:
        """Room for `rows` rows, `width` live columns ending at `end`, and `right` more."""
        layout = self.layout
        fits = (
            rows <= self.slots and layout.end - width >= 0 and layout.end + right <= self.capacity
        )
        if fits:
            return
        slots = max(rows, 2 * self.slots, self.min_slots) if rows > self.slots else self.slots
        live = layout.end - layout.start
        new_end = SPARE_COLUMNS + max(width, live)
        capacity = new_end + right + max(SPARE_COLUMNS, live)
        layers: list[Any] = []
        for index, (heads, dim, dtype, device) in enumerate(self._shapes):
            shape = (slots, heads, capacity, dim)
            keys = torch.empty(shape, dtype=dtype, device=device)
            values = torch.empty(shape, dtype=dtype, device=device)
            if layout.rows and live:
                old = self.cache.layers[index]
                assert isinstance(old, SlotLayer)
                region = slice(layout.start, layout.end)
                keys[: layout.rows, :, new_end - live : new_end] = old.buffer_keys[
                    : layout.rows, :, region
                ]
                values[: layout.rows, :, new_end - live : new_end] = old.buffer_values[
                    : layout.rows, :, region
                ]
            layers.append(SlotLayer(layout, keys, values))
        mask = torch.zeros(slots, capacity, dtype=torch.long, device=self.device)
        positions = torch.zeros(slots, dtype=torch.long, device=self.device)
        if layout.rows:
            mask[: layout.rows, new_end - live : new_end] = self.mask[
                : layout.rows, layout.start : layout.end
            ]
            positions[: layout.rows] = self.next_positions[: layout.rows]
        self.cache.layers = layers
        self.mask, self.next_positions = mask, positions
        self.slots, self.capacity = slots, capacity
        layout.start, layout.end = new_end - live, new_end
        self._refresh()

    def _zero(self, rows: slice, columns: slice) -> None:
        if rows.stop > rows.start and columns.stop > columns.start:
            for layer in self.cache.layers:
                assert isinstance(layer, SlotLayer)
                layer.buffer_keys[rows, :, columns] = 0
                layer.buffer_values[rows, :, columns] = 0

    def _refresh(self) -> None:
        for layer in self.cache.layers:
            assert isinstance(layer, SlotLayer)
            layer.refresh()
