"""A TensorFlow SavedModel of ``xception_graph`` for TensorFlow Serving: two signatures (float32
in ``[-1, 1]`` and uint8 pixels), the labels as an asset (``assets/labels.txt``).

Written into the folder it is given (``export`` gives a staged one, published whole).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .. import config


def save_saved_model(folder: str | os.PathLike, weights_np: dict, labels: list[str]) -> str:
    """Write the SavedModel into ``folder`` (new or empty); TensorFlow's version."""
    from ..runtimes.tensorflow import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    from ..fused import FoldedOps
    from ..model import xception_graph

    class VariableOps(FoldedOps):
        """The folded graph with its weights as (non-trainable) variables, which a SavedModel stores.

        tf.function may run the Python function more than once while tracing: the variables are
        made on the first pass and handed out again, in the same order, on the next ones.
        """

        def __init__(self, weights, module):
            super().__init__(weights)
            self.module = module
            self.next = 0

        def _const(self, array):
            if self.next == len(self.module.tracked):
                with tf.init_scope():
                    self.module.tracked.append(tf.Variable(array, trainable=False))
            v = self.module.tracked[self.next]
            self.next += 1
            return v

        def graph(self, x):
            self.next = 0
            return xception_graph(x, self)

    module = tf.Module(name="xception")
    module.tracked = []
    ops = VariableOps(weights_np, module)
    size = config.IMAGENET_INPUT_SIZE
    with tempfile.TemporaryDirectory(prefix="xception-export-") as scratch:
        labels_file = Path(scratch) / "labels.txt"  # copied into the SavedModel as assets/labels.txt
        labels_file.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
        module.labels = tf.saved_model.Asset(str(labels_file))

        # Trace once here (weights captured as variables), then wrap for the two signatures.
        net = tf.function(ops.graph, autograph=False)
        graph = net.get_concrete_function(tf.TensorSpec([None, size, size, 3], tf.float32))  # never retraced
        module.net = net

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def serving_default(images):
            return {"probabilities": graph(images)}

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="pixels")])
        def serving_uint8(pixels):
            x = tf.cast(pixels, tf.float32) / config.DEFAULT_PREPROCESS.scale + config.DEFAULT_PREPROCESS.offset
            return {"probabilities": graph(x)}

        module.serving_default, module.serving_uint8 = serving_default, serving_uint8
        tf.saved_model.save(module, os.fspath(folder), signatures={"serving_default": serving_default,
                                                                   "serving_uint8": serving_uint8})
    return tf.__version__
