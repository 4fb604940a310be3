"""Where a run's batches come from, behind one interface: the dataset held on the devices
(``dataset.in_memory=True``, the default) or streamed from disk by worker processes.

Both give the loop the same four things:

* ``chunks(ranges)``: for each chunk of steps, its inputs ``(shared, per_step)``, already on
  the devices (host -> device transfers happen here, outside the jitted steps);
* ``train_batch(shared, per_step, step)``: traced inside the step, the batch of ``step``;
* ``eval_inputs(split)`` / ``eval_batch(inputs)``: the same for the evaluation batches, which
  visit every example of the split once (the last batch padded and masked);
* ``augmentations``: what the step applies on the device (the stream augments on the host).

In memory, a step gathers its batch from device arrays at indices it computes from its step
number and a device-resident table of epoch permutations, so a step needs nothing from the
host. Streaming, the host sends each chunk's uint8 batches and the step normalises them.
Either way the batch of step ``s`` depends only on ``(seed, s)``.
"""

from __future__ import annotations

from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxclf import data
from jaxclf.train import mesh as mesh_lib


def gather(arrays, indices, mask) -> dict:
    """A batch from device arrays: inputs, labels (and lengths) at ``indices``, with ``mask``."""
    return {**{k: v[indices] for k, v in arrays.items()}, "mask": mask}


class InMemoryInputs:
    """The whole dataset replicated on the devices; batches gathered inside the step."""

    def __init__(self, ds: data.Dataset, config, mesh):
        self.ds, self.seed, self.train_split = ds, config.seed, config.dataset.train_split
        self.batch_size, self.eval_batch_size = config.train.batch_size, config.train.eval_batch_size
        self.augmentations = tuple(config.dataset.augment)
        self._repl, self.batch_sharding = mesh_lib.replicated(mesh), mesh_lib.batch_sharded(mesh)
        self.arrays = {name: {k: mesh_lib.global_array(v, self._repl) for k, v in split.arrays().items()}
                       for name, split in ds.splits.items()}
        self.num_train = ds.splits[self.train_split].num_examples

    def train_batch(self, table, _per_step, step) -> dict:
        indices = data.table_indices(table, step, self.batch_size, self.num_train)
        indices = jax.lax.with_sharding_constraint(indices, self.batch_sharding)  # each device gathers its part
        return gather(self.arrays[self.train_split], indices, jnp.ones(indices.shape, jnp.float32))

    def chunks(self, ranges) -> Iterator:
        host = device = None
        for table in data.index_tables(self.seed, ranges, self.batch_size, self.num_train):
            if table is not host:  # sent once, used until the steps leave its epochs
                host, device = table, {k: mesh_lib.global_array(v, self._repl) for k, v in table.items()}
            yield device, None

    def eval_inputs(self, split: str) -> Iterator:
        for idx, mask in data.eval_batches(self.ds.splits[split].num_examples, self.eval_batch_size):
            yield self.arrays[split], mesh_lib.global_array(idx, self.batch_sharding), mesh_lib.global_array(mask, self.batch_sharding)

    def eval_batch(self, inputs) -> dict:
        return gather(*inputs)


class StreamedInputs:
    """Batches decoded and preprocessed by worker processes (``jaxclf.data.stream``), sent as
    uint8 and normalised on the device; each process reads only its rows of a global batch."""

    augmentations = ()  # applied on the host by the stream

    def __init__(self, ds: data.stream.StreamDataset, config, mesh):
        self.ds, self.batch_size, self.eval_batch_size = ds, config.train.batch_size, config.train.eval_batch_size
        self.batch_sharding = mesh_lib.batch_sharded(mesh)
        self._steps_sharded = mesh_lib.batch_sharded(mesh, batch_axis=1)
        self._rows = mesh_lib.process_rows(self.batch_sharding, self.batch_size)  # this process reads only these
        self._norm = data.stream.normalization_table(ds.mean, ds.std)
        self.num_train = ds.train.num_examples

    def _normalized(self, batch) -> dict:
        return {**batch, "inputs": data.stream.normalize(batch["inputs"], self._norm)}

    def train_batch(self, _table, batch, _step) -> dict:
        return {**self._normalized(batch), "mask": jnp.ones(batch["labels"].shape, jnp.float32)}

    def chunks(self, ranges) -> Iterator:
        if not ranges:
            return
        make = data.stream.TrainRows(self.ds.train, self.batch_size, self._rows)
        steps = range(ranges[0][0], ranges[-1][1])
        batches = data.stream.stream(make, steps, self.ds.train.num_workers, what=f"{self.ds.name} training batches")
        try:
            for start, stop in ranges:
                chunk = [next(batches) for _ in range(stop - start)]
                # one step (K = 1, the usual streaming case): a view, not a copy of the batch
                host = {k: chunk[0][k][None] if len(chunk) == 1 else np.stack([b[k] for b in chunk]) for k in chunk[0]}
                yield None, {k: mesh_lib.global_array_from_rows(v, self._rows, self._steps_sharded, self.batch_size, 1)
                             for k, v in host.items()}
        finally:
            batches.close()

    def eval_inputs(self, split: str) -> Iterator:
        size, source = self.eval_batch_size, self.ds.splits[split]
        rows = mesh_lib.process_rows(self.batch_sharding, size)
        batches = list(data.eval_batches(source.num_examples, size))
        stream = data.stream.stream(data.stream.EvalRows(source, rows), batches, source.num_workers,
                                    what=f"{self.ds.name} {split}")
        try:
            for host in stream:
                yield {k: mesh_lib.global_array_from_rows(v, rows, self.batch_sharding, size) for k, v in host.items()}
        finally:
            stream.close()

    def eval_batch(self, batch) -> dict:
        return self._normalized(batch)


def for_config(config, mesh):
    """The configured dataset, loaded, behind its inputs."""
    if config.dataset.in_memory:
        ds = data.load(config.dataset)
        _check_labels(ds)
        return InMemoryInputs(ds, config, mesh)
    return StreamedInputs(data.stream.load(config.dataset, seed=config.seed), config, mesh)


def _check_labels(ds: data.Dataset) -> None:
    for name, split in ds.splits.items():
        bad = (split.labels < 0) | (split.labels >= ds.num_classes)
        if bad.any():
            raise ValueError(
                f"split {name!r} has {int(bad.sum())} labels outside [0, {ds.num_classes}), "
                f"e.g. {split.labels[bad][:5].tolist()}"
            )
